"""The trainer's bus consumers (durable, explicit ack):
- `idlock.events.job.succeeded` (TRAINER_GOLDEN): the degradation watch, golden collection;
- `idlock.events.feedback.recorded`: a down rating removes (or pre-empts) the job's golden image; up boosts it;
- `idlock.events.character.deleted`: erases the character's training artifacts;
- `idlock.jobs.train` (TRAINER_TRAIN, work queue): runs a training run, heartbeating while it trains.
"""

from __future__ import annotations

import logging

from idlock import subjects
from idlock.bus import Delivery, Worker
from idlock.errors import IdlockError
from idlock.v1 import events_pb2, orchestrator_service_pb2
from services.trainer.erasure import delete_artifacts
from services.trainer.golden import GoldenCollector, member_event
from services.trainer.registry import DOWN, UP
from services.trainer.runs import SETTLED, TrainingRuns
from services.trainer.runtime import TrainerRuntime
from services.trainer.watch import DegradationWatch

log = logging.getLogger("idlock.trainer")

#: EVENTS consumers besides TRAINER_GOLDEN
TRAINER_FEEDBACK = "trainer-feedback"
TRAINER_CHARACTER_DELETED = "trainer-character-deleted"
RATINGS = {
    orchestrator_service_pb2.FEEDBACK_RATING_DOWN: DOWN,
    orchestrator_service_pb2.FEEDBACK_RATING_UP: UP,
}


class TrainerHandlers:
    def __init__(
        self, rt: TrainerRuntime, golden: GoldenCollector, runs: TrainingRuns, watch: DegradationWatch
    ) -> None:
        self.rt = rt
        self.golden = golden
        self.runs = runs
        self.watch = watch

    async def start(self) -> list[Worker]:
        rt, s = self.rt, self.rt.settings
        workers: list[Worker] = []
        if s.collector_enabled:
            # an erasure is retried until it is done; the others give up after 5 tries
            for subject, durable, handler, tries in (
                (subjects.JOB_SUCCEEDED, subjects.TRAINER_GOLDEN, self.on_job_succeeded, 5),
                (subjects.FEEDBACK_RECORDED, TRAINER_FEEDBACK, self.on_feedback, 5),
                (subjects.CHARACTER_DELETED, TRAINER_CHARACTER_DELETED, self.on_character_deleted, -1),
            ):
                workers.append(
                    await rt.bus.consume(subjects.EVENTS_STREAM, subject, durable, handler, max_deliver=tries)
                )
        workers.append(
            await rt.bus.consume(
                subjects.JOBS_STREAM,
                subjects.JOB_TRAIN,
                subjects.TRAINER_TRAIN,
                self.on_train,
                ack_wait_s=s.ack_wait_s,
                max_deliver=s.max_deliver,
                backoff_s=(5.0, 30.0),
            )
        )
        return workers

    async def on_job_succeeded(self, delivery: Delivery) -> None:
        ev = delivery.message
        if not isinstance(ev, events_pb2.JobEvent):
            return
        if ev.metrics.cast:  # a scene of several: each character's own face, IDR and golden crop
            for k, member in enumerate(ev.metrics.cast, start=1):
                view = member_event(ev, member, k)
                await self.watch.observe(view)
                if member.face_found:
                    await self.golden.collect(view, member.box)
            return
        await self.watch.observe(ev)  # idempotent per job: a redelivery is not counted twice
        await self.golden.collect(ev)

    async def on_feedback(self, delivery: Delivery) -> None:
        ev = delivery.message
        if not isinstance(ev, events_pb2.FeedbackRecorded) or not ev.job_id:
            return
        rating = RATINGS.get(ev.rating)
        if rating is not None:
            await self.golden.feedback(ev.job_id, ev.character_id, rating)

    async def on_character_deleted(self, delivery: Delivery) -> None:
        ev = delivery.message
        if isinstance(ev, events_pb2.CharacterDeleted) and ev.character_id:
            await delete_artifacts(self.rt, ev.character_id)

    async def on_train(self, delivery: Delivery) -> None:
        work = delivery.message
        if not isinstance(work, events_pb2.TrainJobWork) or not work.run_id:
            log.warning("ignoring a %s on %s: not a TrainJobWork", type(work).__name__, delivery.subject)
            return
        final = delivery.num_delivered >= self.rt.settings.max_deliver
        async with delivery.heartbeat():
            try:
                await self.runs.run(work.run_id)
            except Exception as e:
                msg = e.message if isinstance(e, IdlockError) else f"{type(e).__name__}: {e}"
                log.warning(
                    "training run %s failed (delivery %d): %s", work.run_id, delivery.num_delivered, msg
                )
                if final or isinstance(e, SETTLED):
                    await self.runs.fail(work.run_id, msg)
                    return  # settled: a bad dataset or config does not get better by retrying
                raise


__all__ = ["TRAINER_CHARACTER_DELETED", "TRAINER_FEEDBACK", "TrainerHandlers"]
