"""A job accepted by a replica with a free slot runs there at once, without the round trip through the outbox,
NATS and a worker's read of the queued row.

The job's work message is still written to the outbox with the job, but held: it is due only when the lease
runs out, and the lease's renewals push it on. So a replica that dies mid-job leaves a message that any replica's
relay publishes once the lease has run out, as a worker's unacknowledged delivery comes back after ack_wait.
The job's end deletes the held message in its transaction (a cancelled job's goes when its run stops). A local
run that fails transiently, or that a shutdown interrupts, hands its message to the queue: the job is then
delivered like any other.

The replica's slots (its `concurrency`) are shared with the queue's deliveries: a local start takes a free slot
only, and a delivery that finds every slot taken waits for one (its heartbeats going on meanwhile).
No gRPC or NATS here: the runtime gives the worker and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace

from services.orchestrator.flow import Outcome
from services.orchestrator.jobs import JobStore
from services.orchestrator.models import Job
from services.orchestrator.worker import JobWorker

log = logging.getLogger("idlock.orchestrator.local_start")
_tracer = trace.get_tracer("idlock.orchestrator")
SPAN = "job local start"

#: outcomes whose ending deleted the held work message in its transaction (`JobStore.finish`)
ENDED_HERE = frozenset({Outcome.SUCCEEDED, Outcome.FAILED, Outcome.NEEDS_MORE_REFS})


class LocalStarts:
    """The replica's job slots, and the jobs it started itself."""

    def __init__(
        self,
        worker: JobWorker,
        store: JobStore,
        *,
        concurrency: int,
        enabled: bool,
        backoff_s: Sequence[float],
        ready: Callable[[], bool] = lambda: True,
        on_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self.worker = worker
        self.store = store
        #: one per job this replica runs, whichever way it came (a local start or a delivery)
        self.slots = asyncio.Semaphore(concurrency)
        self.enabled = enabled
        self.backoff_s = list(backoff_s) or [0.0]
        #: whether the queue can take a handed-back job now (NATS connected); no local start otherwise
        self.ready = ready
        self.on_outbox = on_outbox
        self._open = False
        self._running: set[asyncio.Task[None]] = set()

    def open(self) -> None:
        self._open = True

    async def take(self) -> bool:
        """A slot for a job about to be accepted, when one is free now (never waits); False when the job goes
        through the queue. A slot taken must be given to `start` or back with `give_back`."""
        if not (self._open and self.enabled and self.ready()) or self.slots.locked():
            return False
        return await self.slots.acquire()  # free, and no delivery waits for it: this does not wait

    def give_back(self) -> None:
        self.slots.release()

    def start(self, job: Job) -> None:
        """Run `job` (just accepted, its work held in the outbox) in the slot `take` gave."""
        self.worker.events.hold(job.id)  # its `queued` goes out (from the outbox) before its `started`
        # a context of its own: the submission's RPC deadline, caller and request id are not the job's (its peer
        # calls take the step's own deadline); only the trace goes along, as it does in a queue message's headers
        trace_of_submission = otel_context.get_current()
        task = asyncio.create_task(
            self._run(job, trace_of_submission), name=f"local-{job.id}", context=contextvars.Context()
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, job: Job, parent: otel_context.Context) -> None:
        try:
            # the job's own span, in the submission's trace (as a delivery's span is, through NATS)
            with _tracer.start_as_current_span(SPAN, context=parent, attributes={"idlock.job_id": job.id}):
                outcome = await self.worker.run(job.id, prefetch=True, queued=job, hold_work=True)
            if outcome not in ENDED_HERE:  # cancelled or erased meanwhile: its held message is not needed
                await self.store.drop_work(job.id)
        except asyncio.CancelledError:  # shutting down: the queue takes the job (the worker released it)
            await asyncio.shield(self._hand_over(job.id, 0.0))
            raise
        except Exception as e:  # noqa: BLE001 - transient (the worker ended permanent failures): the queue retries
            log.warning("job %s: its local run failed (%s); the queue retries it", job.id, e)
            await self._hand_over(job.id, self.backoff_s[0])
        finally:
            self.slots.release()

    async def _hand_over(self, job_id: str, delay_s: float) -> None:
        try:
            if await self.store.release_work(job_id, delay_s):
                self.on_outbox()
        except Exception as e:  # noqa: BLE001 - the held message still comes due when the lease runs out
            log.warning(
                "job %s: handing its work to the queue failed (%s); it goes when its lease ends", job_id, e
            )

    async def close(self, grace_s: float) -> None:
        """No new local starts; wait up to `grace_s` for the running ones, then hand the rest to the queue."""
        self._open = False
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running), timeout=grace_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


__all__ = ["LocalStarts"]
