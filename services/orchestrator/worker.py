"""The worker's side of a job: claim it, hold its lease while its flow runs, and map what happened to an ending.

Permanent errors (bad input, not found, no consent) end the job `failed` at once; transient ones (unavailable,
deadline, quota) are raised so the message is redelivered with backoff, and on the final delivery the job ends
`failed` before the bus writes the dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from opentelemetry import trace

from idlock import telemetry
from idlock.db import let_started_calls_leave
from idlock.errors import IdlockError
from idlock.storage import ObjectStore
from idlock.v1 import common_pb2
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator import observe
from services.orchestrator.cast_flow import CastFlow
from services.orchestrator.flow import (
    PERMANENT,
    Flow,
    FlowConfig,
    FlowDeps,
    JobFailed,
    Outcome,
    Peers,
    Prefetch,
    StopJob,
)
from services.orchestrator.image_flow import ImageFlow
from services.orchestrator.job_events import EventSink, JobEvents, job_event
from services.orchestrator.jobs import JobStore
from services.orchestrator.models import Job
from services.orchestrator.runner import StepRunner, claim, keep_lease
from services.orchestrator.state_extraction import StateExtractor
from services.orchestrator.video_flow import VideoFlow
from services.orchestrator.views import dict_to_msg

log = logging.getLogger("idlock.orchestrator.worker")


class JobWorker:
    def __init__(
        self,
        store: JobStore,
        peers: Peers,
        events: EventSink,
        extractor: StateExtractor,
        config: FlowConfig,
        *,
        worker_id: str,
        objects: ObjectStore | None = None,
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        #: a job's ending was written with its event: the relay publishes it now
        self.on_outbox = on_outbox
        self.events = JobEvents(events)
        self.config = config
        self.worker_id = worker_id
        deps = FlowDeps(peers, extractor, config, objects)
        self.image = ImageFlow(deps)
        self.video = VideoFlow(deps)
        self.cast = CastFlow(deps)

    def flow_for(self, video: bool, cast: bool = False) -> Flow:
        if cast:
            return self.cast
        return self.video if video else self.image

    async def run(
        self,
        job_id: str,
        *,
        final_attempt: bool = False,
        prefetch: bool = False,
        queued: Job | None = None,
        hold_work: bool = False,
    ) -> Outcome:
        """Run (or resume) a job. Raises on a transient failure (redeliver).

        `prefetch`: read the queued row first (or take `queued`, the row just written), and let its flow start
        reads from it while the job is being claimed (they are dropped when the job is not run, or the claimed row
        says otherwise). The queue's message carries ids only: a prompt never sits in a stream. `hold_work`: the
        job was started where it was accepted, and the lease's renewals hold its work message back
        (`local_start.py`)."""
        prefetch_flow: Flow | None = None
        early: Prefetch | None = None
        if prefetch:
            if queued is None:
                queued = await self.store.get(job_id)
            if queued is not None:
                prefetch_flow = self.flow_for(
                    bool((queued.options or {}).get("video")), bool(queued.cast_members)
                )
                with telemetry.bound(  # the reads it starts carry the job's ids
                    job_id=queued.id,
                    character_id=queued.character_id,
                    user_id=queued.owner_id,
                    step="context",
                ):
                    early = prefetch_flow.prefetch(queued)

        def drop_early() -> None:
            # also used when another worker's lease is waited out: what was asked before may be stale
            nonlocal early
            if early is not None:
                early.cancel()
                early = None

        try:
            if early is not None:
                await let_started_calls_leave()  # the prefetch goes out before the claim holds the loop
            taken = await claim(self.store, job_id, self.worker_id, self.config.lease_s, on_wait=drop_early)
            if taken.outcome in ("missing", "terminal"):
                log.info("job %s: %s, nothing to do", job_id, taken.outcome)
                return Outcome(taken.outcome)
            job = taken.job
            observe.started(job, here=hold_work)
            lease = asyncio.create_task(
                keep_lease(self.store, job_id, self.worker_id, self.config.lease_s, hold_work=hold_work),
                name=f"lease-{job_id}",
            )
            try:
                # "job": lines outside any one step (claim, ending); each step binds its own name
                with telemetry.bound(
                    job_id=job.id, character_id=job.character_id, user_id=job.owner_id, step="job"
                ):
                    trace.get_current_span().set_attribute("idlock.job_id", job.id)
                    options = dict_to_msg(job.options, pb.GenerationOptions())
                    flow = self.flow_for(options.video, bool(job.cast_members))
                    prefetched = early if flow is prefetch_flow else None
                    return await self._run_claimed(job, options, flow, prefetched, final_attempt)
            except asyncio.CancelledError:
                # shutting down: hand the job back at once (the message is nak'd and redelivered)
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.release(job_id, self.worker_id))
                raise
            finally:
                lease.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lease
        finally:
            drop_early()  # a no-op for a prefetch once it was used

    async def _run_claimed(
        self, job: Job, options: pb.GenerationOptions, flow: Flow, early: Prefetch | None, final_attempt: bool
    ) -> Outcome:
        run = StepRunner(self.store, self.events, self.config, worker_id=self.worker_id, job=job)
        run.on_outbox = self.on_outbox
        self.events.emit_soon(
            "started",
            job_event(job, common_pb2.JOB_STATUS_RUNNING, message=f"attempt {job.attempts}"),
            f"{job.id}:started:{job.attempts}",
        )
        try:
            return await flow.run(job, options, run, early)
        except StopJob:
            log.info("job %s stopped: no longer running for this worker", job.id)
            return Outcome.CANCELLED
        except JobFailed as f:
            return await run.fail(f.outcome, f.code, f.message)
        except PERMANENT as e:  # a finer reason when there is one (moderated: a provider's safety block)
            return await run.fail(Outcome.FAILED, e.reason or e.code, e.message)
        except Exception as e:
            message = e.message if isinstance(e, IdlockError) else f"{type(e).__name__}: {e}"
            if final_attempt:
                await run.fail(
                    Outcome.FAILED, "retries_exhausted", f"gave up after {job.attempts} attempts: {message}"
                )
            else:
                log.warning("job %s attempt %d failed, will retry: %s", job.id, job.attempts, message)
                with contextlib.suppress(Exception):
                    await self.store.release(job.id, self.worker_id)
            raise


__all__ = ["JobWorker"]
