"""The step runner: claim a job, hold its lease, run its steps against its checkpoint, and end it.

A step that cost money or long work (render, refinement, a vision model's state) is written to the job row
before the job's next call out starts (a gate in between that calls nothing does not wait for the write); a
redelivered job (a worker crashed, a reconciler re-enqueue) skips what is done, so it never renders twice. Steps
that are cheap and safe to redo (context, score, the heuristic state, the idempotent RecordEpisode) ride along
with the next write instead of costing one each. Before a paid step the runner makes
a conditional write, so a job cancelled meanwhile stops there. Every write is conditional on the job still
running for this worker: a cancellation or a takeover stops the job (`StopJob`).

A step whose peer (or object storage) is unavailable waits it out inside its retry window (`idlock.retry`),
saying what it waits for in the row and in events; the window is counted from the row's `waiting_since`, so it
outlasts a worker's restart. Before the first effect outside the job (recording the scene) the job is committed:
a cancel after that comes too late, a cancel before it stops the job with no episode. The job's end and its
event are one transaction (the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from opentelemetry import trace

from idlock import retry, telemetry
from idlock.db import let_started_calls_leave
from idlock.errors import IdlockError, Unavailable
from idlock.v1 import common_pb2
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator import observe, outbox
from services.orchestrator.checkpoint import Checkpoint
from services.orchestrator.flow import FlowConfig, JobFailed, Outcome, StopJob
from services.orchestrator.job_events import JobEvents, job_event
from services.orchestrator.jobs import Claim, JobStore
from services.orchestrator.models import Job, aware, utcnow
from services.orchestrator.views import msg_to_dict

log = logging.getLogger("idlock.orchestrator.runner")
_tracer = trace.get_tracer("idlock.orchestrator")

#: steps that call a paid provider: a cancelled job must not start them (the refiner is confirmed where called)
PAID_STEPS = frozenset({"render", "regenerate"})
#: steps with an effect outside the job: the job is committed before them (a later cancel comes too late)
EFFECT_STEPS = frozenset({"record"})

Step = TypeVar("Step")


async def claim(
    store: JobStore, job_id: str, worker_id: str, lease_s: float, on_wait: Callable[[], None] | None = None
) -> Claim:
    """Claim the job; while another live worker holds it, wait for its lease to run out (at most 2 leases),
    calling `on_wait` first."""
    give_up = time.monotonic() + 2 * lease_s + 1.0
    while True:
        taken = await store.claim(job_id, worker_id, lease_s)
        if taken.outcome != "busy":
            return taken
        if on_wait is not None:
            on_wait()
        if time.monotonic() >= give_up:
            raise Unavailable(f"job {job_id} is being run by worker {taken.job.lease_owner}")
        wait = (aware(taken.lease_until) - utcnow()).total_seconds() if taken.lease_until else 0.5
        await asyncio.sleep(min(max(wait, 0.05) + 0.05, max(0.05, give_up - time.monotonic())))


async def keep_lease(
    store: JobStore, job_id: str, worker_id: str, lease_s: float, *, hold_work: bool = False
) -> None:
    """Renew the lease every third of it until cancelled (or until the job is no longer ours); `hold_work`: and
    keep the job's held work message back as long (`local_start.py`)."""
    interval = max(lease_s / 3.0, 0.05)
    while True:
        await asyncio.sleep(interval)
        try:
            if not await store.renew(job_id, worker_id, lease_s, hold_work=hold_work):
                return
        except Exception as e:  # noqa: BLE001 - retried next interval
            log.warning("job %s: lease renewal failed: %s", job_id, e)


class StepRunner:
    """Runs the steps of one claimed job for a flow, and ends it."""

    def __init__(
        self,
        store: JobStore,
        events: JobEvents,
        config: FlowConfig,
        *,
        worker_id: str,
        job: Job,
    ) -> None:
        self.store = store
        self.events = events
        self.config = config
        self.worker_id = worker_id
        self.job = job
        self.ckpt = Checkpoint(job.checkpoint)
        #: called once the relay should publish what an ending wrote to the outbox
        self.on_outbox = lambda: None

    # --- steps ------------------------------------------------------------------------------------------------

    async def step(
        self,
        name: str,
        fn: Callable[[], Awaitable[Step]],
        *,
        carry: bool | Callable[[Step], bool] = False,
        reads_only: bool = False,
        confirms_own_calls: bool = False,
    ) -> Step:
        """Run a step unless the checkpoint holds it. Its result is written to the job row before the job goes
        on, or, when `carry` says it is cheap and safe to redo, with the next write.

        A `reads_only` step (no effect anywhere) runs while the previous step's result is written: its call goes
        out first, and the job goes on only once the write has found the job still running here. A step that
        `confirms_own_calls` (`confirm` before any call it makes: a gate, the heuristic state) is not written
        before: what is unwritten goes with its confirm, or with the next write when it calls nothing."""
        ckpt = self.ckpt
        if ckpt.done(name):
            return ckpt.get(name)
        write_first = bool(ckpt.unwritten) and not (reads_only or confirms_own_calls)
        if name in EFFECT_STEPS:
            await self.write(name, commit=True)  # the effect boundary: a cancel after this comes too late
        elif name in PAID_STEPS or write_first:
            await self.confirm(name)
        t0 = time.perf_counter()
        with telemetry.bound(step=name):  # the step's calls carry it to the peers' log lines
            call = asyncio.ensure_future(self._attempts(name, fn))
        if ckpt.unwritten and not confirms_own_calls:
            # the call is on its way before the write holds the loop (SQLite runs inline)
            await let_started_calls_leave()
            try:
                await self.write(ckpt.unwritten)
            except BaseException:
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call
                raise
        result = await call
        ckpt.confirmed = False
        seconds = time.perf_counter() - t0
        result.seconds = round(seconds, 4)
        ckpt.set(name, result)
        observe.step_done(self.job, name, seconds)
        log.info(
            "job %s: %s done in %.0f ms",
            self.job.id,
            name,
            seconds * 1000,
            extra=telemetry.log_fields(step=name, duration_ms=round(seconds * 1000, 1)),
        )
        if not (carry(result) if callable(carry) else carry):
            ckpt.unwritten = name
        self.progress(name, f"{name} done", key=name)
        return ckpt.get(name)

    async def _attempts(self, name: str, fn: Callable[[], Awaitable[Step]]) -> Step:
        """Run a step's call; a transient failure (a peer or storage unavailable, a timeout) is tried again with
        backoff until the retry window, counted from when the job began waiting, or the job's deadline ends."""
        job = self.job
        since = aware(job.waiting_since) if job.waiting_for and job.step == name else None
        with _tracer.start_as_current_span(
            f"job step {name}", attributes={"idlock.job_id": job.id, "idlock.step": name}
        ):
            return await self._tries(name, fn, since)

    async def _tries(self, name: str, fn: Callable[[], Awaitable[Step]], since: Any) -> Step:
        tries = 0
        while True:
            try:
                result = await fn()
            except retry.TRANSIENT as e:
                since = since or utcnow()
                tries += 1
                await self._wait_out(name, e, since, tries)
                continue
            if self.job.waiting_for:  # it waited (here, or before a restart): say it no longer does
                await self._waiting(name, "", None)
            return result

    async def _wait_out(self, name: str, e: BaseException, since: Any, tries: int) -> None:
        """Wait before the next try, or end the job when the window (or the job's deadline) is over."""
        policy, job = self.config.retry, self.job
        peer = retry.waiting_for(e)
        message = e.message if isinstance(e, IdlockError) else (str(e) or type(e).__name__)
        waited = (utcnow() - since).total_seconds()
        deadline = aware(job.created_at).timestamp() + self.config.job_timeout_s - utcnow().timestamp()
        left = min(policy.window_for(peer) - waited, deadline)
        if left <= 0:
            why = "the job's deadline passed" if deadline <= 0 else f"gave up after {waited:.0f} s"
            raise JobFailed(
                Outcome.FAILED,
                retry.failure_code(e),
                f"{name}: {peer} unavailable ({why}, {tries} tries): {message}",
            )
        delay = min(policy.delay(tries), left)
        log.info(
            "job %s: %s waits for %s (%s); try %d in %.1f s", job.id, name, peer, message, tries + 1, delay
        )
        observe.waited(peer)
        await self._waiting(name, peer, since)  # also finds a cancel that came while it waited
        ev = job_event(
            job,
            common_pb2.JOB_STATUS_RUNNING,
            step=name,
            waiting_for=peer,
            message=f"waiting for {peer}: {message}; next try in {delay:.1f} s",
        )
        self.events.emit_soon("progress", ev, f"{job.id}:waiting:{job.attempts}:{name}:{tries}")
        await asyncio.sleep(delay)

    async def _waiting(self, step: str, peer: str, since: Any) -> None:
        if not await self.store.set_waiting(self.job.id, self.worker_id, peer, since):
            raise StopJob()  # cancelled (or taken over) while waiting
        self.job.waiting_for, self.job.waiting_since, self.job.step = peer, since, step

    async def write(self, step: str, *, commit: bool = False) -> None:
        """Write the finished steps and the step now running if the job still runs here; else stop. `commit`:
        the job passes its effect boundary."""
        if not await self.store.save_steps(
            self.job.id, self.worker_id, self.ckpt.to_stored(), step=step, commit=commit
        ):
            raise StopJob()
        self.ckpt.confirmed = True
        self.ckpt.unwritten = ""

    async def confirm(self, step: str) -> None:
        """Before a paid call: unless the last thing done was a write that found the job running here, write
        (a cancel may have come in meanwhile)."""
        if not self.ckpt.confirmed:
            await self.write(step)

    async def save_operation(self, step: str, tag: str, name: str) -> None:
        """Store a provider's long-running operation now (while it is polled), so a restarted worker resumes it;
        an empty name forgets it (it ended in an error)."""
        self.ckpt.set_operation(tag, name)
        await self.write(step)
        if name:
            self.progress(step, f"video operation {name}", key=f"{tag}_operation")

    def progress(self, step: str, message: str, *, key: str) -> None:
        ev = job_event(self.job, common_pb2.JOB_STATUS_RUNNING, step=step, message=message)
        self.events.emit_soon("progress", ev, f"{self.job.id}:progress:{key}")

    # --- endings ----------------------------------------------------------------------------------------------

    def _usage(self, provider: str, model: str, cost_usd: float, seconds: float) -> dict[str, Any]:
        """The job's usage record (one per job, written with its end)."""
        return {
            "owner_id": self.job.owner_id,
            "character_id": self.job.character_id,
            "provider": provider,
            "model": model,
            "estimated_cost_usd": cost_usd,
            "total_seconds": seconds,
        }

    def elapsed_s(self) -> float:
        started = aware(self.job.started_at)
        return (utcnow() - started).total_seconds() if started else 0.0

    async def succeed(self, image: common_pb2.ImageRef, metrics: pb.JobMetrics, message: str) -> Outcome:
        """Mark the job succeeded with its usage record, its steps and its event (one transaction); CANCELLED when
        it was cancelled meanwhile. A cancel that came after the effect boundary is said in the message."""
        job = self.job
        event = job_event(
            job,
            common_pb2.JOB_STATUS_SUCCEEDED,
            result_image=image,
            metrics=metrics,
            scene_index=metrics.scene_index,
            message=message,
        )

        def announce(ended: Job) -> list[outbox.Outgoing]:
            if ended.error_code == "cancel_too_late":  # a cancel came after the effect boundary
                event.error_code, event.message = ended.error_code, f"{message}; {ended.error_message}"
            return [outbox.event("succeeded", event, f"{job.id}:succeeded")]

        # the relay publishes the ending after the progress events still on their way (and none after it)
        ended = await self.store.finish(
            job.id,
            Outcome.SUCCEEDED.value,
            worker_id=self.worker_id,
            result_image=msg_to_dict(image),
            metrics=msg_to_dict(metrics),
            checkpoint=self.ckpt.to_stored(),
            usage=self._usage(
                metrics.provider, metrics.model, metrics.estimated_cost_usd, metrics.total_seconds
            ),
            announce=announce,
        )
        if ended is None:
            return Outcome.CANCELLED
        self.on_outbox()
        observe.ended(job, Outcome.SUCCEEDED.value, metrics=metrics)
        ms = self.elapsed_s() * 1000
        log.info(
            "job %s succeeded in %.0f ms", job.id, ms, extra=telemetry.log_fields(duration_ms=round(ms, 1))
        )
        return Outcome.SUCCEEDED

    async def fail(self, outcome: Outcome, code: str, message: str) -> Outcome:
        """End the job failed (or needs_more_refs). A render that was paid for is in the usage record, once."""
        job = self.job
        usage: dict[str, Any] | None = None
        if self.ckpt.done("render"):
            prov = self.ckpt.get("render").provenance
            cost = prov.estimated_cost_usd + self.config.cost_per_job_usd
            usage = self._usage(prov.provider, prov.model, cost, self.elapsed_s())
        stored = self.ckpt.to_stored()
        status = (
            common_pb2.JOB_STATUS_NEEDS_MORE_REFS
            if outcome == Outcome.NEEDS_MORE_REFS
            else common_pb2.JOB_STATUS_FAILED
        )
        event = job_event(job, status, error_code=code, message=message[:2000])
        ended = await self.store.finish(
            job.id,
            outcome.value,
            worker_id=self.worker_id,
            error_code=code,
            error_message=message[:2000],
            usage=usage,
            checkpoint=stored or None,
            announce=lambda _: [outbox.event("failed", event, f"{job.id}:failed")],
        )
        if ended is None:
            return Outcome.CANCELLED
        self.on_outbox()
        observe.ended(job, outcome.value, code)
        log.info("job %s ended %s (%s): %s", job.id, outcome.value, code, message)
        return outcome


__all__ = ["PAID_STEPS", "StepRunner", "claim", "keep_lease"]
