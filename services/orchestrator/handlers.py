"""The orchestrator's bus consumer: `idlock.jobs.generate` (durable ORCHESTRATOR_GENERATE, work queue, explicit
ack), one delivery per job attempt, heartbeating while the job runs; the last allowed delivery ends a job that
still fails `failed` before the bus writes its dead letter."""

from __future__ import annotations

import logging

from idlock import subjects
from idlock.bus import Delivery, Worker
from idlock.v1 import events_pb2
from services.orchestrator.runtime import OrchestratorRuntime

log = logging.getLogger("idlock.orchestrator")


class GenerateConsumer:
    def __init__(self, rt: OrchestratorRuntime) -> None:
        self.rt = rt
        self.worker: Worker | None = None

    async def start(self) -> Worker:
        if self.worker is None:
            s = self.rt.settings
            self.worker = await self.rt.bus.consume(
                subjects.JOBS_STREAM,
                subjects.JOB_GENERATE,
                subjects.ORCHESTRATOR_GENERATE,
                self.on_generate,
                ack_wait_s=s.ack_wait_s,
                max_deliver=s.max_deliver,
                backoff_s=s.backoff_s,
                concurrency=s.concurrency,
            )
        return self.worker

    async def stop(self, grace_s: float | None = None) -> None:
        if self.worker is not None:
            worker, self.worker = self.worker, None
            await worker.stop(self.rt.settings.generation_timeout_s if grace_s is None else grace_s)

    async def on_generate(self, delivery: Delivery) -> None:
        work = delivery.message
        if not isinstance(work, events_pb2.GenerateJobWork) or not work.job_id:
            log.warning("ignoring a %s on %s: not a GenerateJobWork", type(work).__name__, delivery.subject)
            return
        final = delivery.num_delivered >= self.rt.settings.max_deliver
        async with delivery.heartbeat():
            # a redelivery is most likely a resumed job, whose context is saved: no early context for it
            first = delivery.num_delivered == 1
            await self.rt.jobs.run(work.job_id, final_attempt=final, work=work if first else None)


__all__ = ["GenerateConsumer"]
