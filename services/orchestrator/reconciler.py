"""The reconciler: Postgres (or SQLite) is the source of truth for job state, so jobs stuck in queued or running
(a lost message, a dead worker whose lease ran out) are re-enqueued; one that keeps getting stuck ends `failed`.
It is the backstop: a job's work is in the outbox from its submission (`outbox.py`), and the relay publishes it
within seconds of NATS answering; a job whose work is still in the outbox is the relay's, not stuck."""

from __future__ import annotations

import asyncio
import logging

from idlock import subjects
from idlock.v1 import common_pb2
from services.orchestrator import observe, outbox
from services.orchestrator.job_events import job_event
from services.orchestrator.models import FAILED, QUEUED
from services.orchestrator.runtime import OrchestratorRuntime

log = logging.getLogger("idlock.orchestrator")


class Reconciler:
    def __init__(self, rt: OrchestratorRuntime) -> None:
        self.rt = rt

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(self.rt.settings.reconcile_interval_s)
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciler round failed")

    async def watch_queue(self) -> None:
        """Sample the job queue's depth and lag (JetStream) for the metrics endpoint."""
        while True:
            try:
                await self.sample_queue()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - NATS away: the next sample tells
                log.debug("job queue sample failed: %s", e)
            await asyncio.sleep(self.rt.settings.queue_metrics_interval_s)

    async def sample_queue(self) -> tuple[int, int]:
        pending, in_flight = await self.rt.bus.consumer_state(
            subjects.JOBS_STREAM, subjects.ORCHESTRATOR_GENERATE
        )
        observe.queue(pending, in_flight)
        return pending, in_flight

    async def once(self) -> list[str]:
        """Re-enqueue jobs stuck in queued/running; give up after max_requeues. Returns the ids re-enqueued."""
        rt, s = self.rt, self.rt.settings
        out: list[str] = []
        waiting = {row.job_id for row in await rt.relay.pending()}
        # work the queue still holds is not lost: queued jobs then wait for a worker (busy ones, or waiting out an
        # outage), and re-enqueueing them would only count them towards giving up
        queue_busy = await rt.bus.backlog(subjects.JOBS_STREAM, subjects.ORCHESTRATOR_GENERATE) > 0
        for job in await rt.store.stuck(s.stuck_after_s):
            if job.id in waiting or (queue_busy and job.status == QUEUED):
                continue
            if job.requeues >= s.max_requeues:
                msg = f"stuck in {job.status} after {job.requeues} re-enqueues; gave up"
                ev = job_event(job, common_pb2.JOB_STATUS_FAILED, error_code="stuck", message=msg)
                ended = await rt.store.finish(
                    job.id,
                    FAILED,
                    error_code="stuck",
                    error_message=msg,
                    announce=lambda _, ev=ev, job=job: [outbox.event("failed", ev, f"{job.id}:failed")],
                )
                if ended is not None:
                    rt.relay.wake()
                    observe.ended(job, FAILED, "stuck")
                continue
            n = await rt.store.requeue(job)
            if n is None:
                continue
            rt.relay.wake()
            log.info("re-enqueued job %s (stuck in %s), requeue %d", job.id, job.status, n)
            out.append(job.id)
        return out


__all__ = ["Reconciler"]
