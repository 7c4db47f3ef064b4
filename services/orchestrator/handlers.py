"""The orchestrator's bus consumers: `idlock.jobs.generate` (durable ORCHESTRATOR_GENERATE, work queue, explicit
ack), one delivery per job attempt, heartbeating while the job runs; the last allowed delivery ends a job that
still fails `failed` before the bus writes its dead letter. And `idlock.events.character.deleted` (durable
ORCHESTRATOR_CHARACTER_DELETED): the character's jobs are erased, retried until done (an erasure never gives up)."""

from __future__ import annotations

import asyncio
import logging

from idlock import subjects
from idlock.bus import Delivery, Worker
from idlock.v1 import events_pb2
from services.orchestrator.erasure import JobErasure
from services.orchestrator.runtime import OrchestratorRuntime

log = logging.getLogger("idlock.orchestrator")


class GenerateConsumer:
    def __init__(self, rt: OrchestratorRuntime) -> None:
        self.rt = rt
        self.worker: Worker | None = None
        self.erasures: Worker | None = None

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
        await self.start_erasures()
        self.rt.local.open()  # with the queue's consumer: jobs accepted here may start here
        return self.worker

    async def stop(self, grace_s: float | None = None) -> None:
        grace = self.rt.settings.generation_timeout_s if grace_s is None else grace_s
        if self.worker is not None:
            worker, self.worker = self.worker, None
            await asyncio.gather(worker.stop(grace), self.rt.local.close(grace))
        if self.erasures is not None:
            erasures, self.erasures = self.erasures, None
            await erasures.stop(self.rt.settings.ack_wait_s)

    async def start_erasures(self) -> Worker:
        if self.erasures is None:
            rt = self.rt
            self.erasures = await rt.bus.consume(
                subjects.EVENTS_STREAM,
                subjects.CHARACTER_DELETED,
                subjects.ORCHESTRATOR_CHARACTER_DELETED,
                self.on_character_deleted,
                ack_wait_s=rt.settings.ack_wait_s,
                max_deliver=-1,
                backoff_s=(1.0, 5.0, 30.0, 120.0),
            )
        return self.erasures

    async def on_character_deleted(self, delivery: Delivery) -> None:
        ev = delivery.message
        if not isinstance(ev, events_pb2.CharacterDeleted) or not ev.character_id:
            return
        rt = self.rt
        erasure = JobErasure(rt.db, rt.objects, rt.store.changes, lease_s=rt.settings.ack_wait_s)
        async with delivery.heartbeat():
            await erasure.erase_character(ev.character_id)

    async def on_generate(self, delivery: Delivery) -> None:
        work = delivery.message
        if not isinstance(work, events_pb2.GenerateJobWork) or not work.job_id:
            log.warning("ignoring a %s on %s: not a GenerateJobWork", type(work).__name__, delivery.subject)
            return
        final = delivery.num_delivered >= self.rt.settings.max_deliver
        async with delivery.heartbeat(), self.rt.local.slots:  # a slot a local start holds is waited for
            # a redelivery is most likely a resumed job, whose context is saved: no early context for it
            first = delivery.num_delivered == 1
            await self.rt.jobs.run(work.job_id, final_attempt=final, prefetch=first)


__all__ = ["GenerateConsumer"]
