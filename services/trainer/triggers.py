"""When a character trains again (seed 3.1): every `auto_train_min_images` golden images (size), every
`retrain_every_s` when new golden images arrived since its last run (time), and when the degradation watch marks it
degraded. Each start is a decision kept with its reason (`retrain_requested`).

A trigger names its run by a request id (the size: the golden count; the time: the last run; degradation: the
decision), and a run id follows from it, so a restart or a second trainer replica deciding the same starts the same
run, not another; the time trigger's due date is read from the rows (the last run, the newest golden image), so it
survives restarts without a stored schedule.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select

from idlock.errors import IdlockError, NotFound
from services.trainer import models as m
from services.trainer.datasets import Datasets
from services.trainer.journal import RETRAIN, record_decision
from services.trainer.runs import TrainingRuns, run_id_for
from services.trainer.runtime import TrainerRuntime

log = logging.getLogger("idlock.trainer.triggers")


class LearningTriggers:
    def __init__(self, rt: TrainerRuntime, datasets: Datasets, runs: TrainingRuns) -> None:
        self.rt = rt
        self.datasets = datasets
        self.runs = runs
        self._lock = asyncio.Lock()

    def enabled(self) -> bool:
        return bool(self.rt.settings.base_model_path) and self.rt.bus is not None

    async def start(self, character_id: str, request_id: str, reason: str) -> m.TrainingRun | None:
        """Build a dataset and start a run for a trigger; None when nothing started (that trigger's run exists
        already, training is not configured, or the dataset kept nothing)."""
        if not self.enabled():
            return None
        # one build at a time: a trigger's run is looked for after the one before it started
        async with self._lock:
            try:
                await self.rt.repo.get_run(run_id_for(character_id, request_id))
                return None
            except NotFound:
                pass
            try:
                built = await self.datasets.build(character_id, 0)
                if not built.kept:
                    log.info("%s: %s, but the dataset kept no image", character_id, reason)
                    return None
                run = await self.runs.start(character_id, built.uri, request_id=request_id)
            except IdlockError as e:
                log.warning("training %s not started (%s): %s", character_id, reason, e.message)
                return None
        await record_decision(self.rt, character_id, RETRAIN, f"{reason}: run {run.id}")
        return run

    async def on_golden(self, character_id: str) -> None:
        """The size trigger: every `auto_train_min_images` golden images."""
        n = self.rt.settings.auto_train_min_images
        if not n:
            return
        count = await self.rt.repo.count_goldens(character_id)
        if count >= n and count % n == 0:
            await self.start(character_id, f"auto:{character_id}:{count}", f"{count} golden images")

    async def on_degraded(self, decision: m.LearningDecisionRow) -> None:
        await self.start(
            decision.character_id,
            f"degraded:{decision.id}",
            f"identity retention degraded ({decision.recent_idr:.3f} against {decision.baseline_idr:.3f})",
        )

    async def due(self, now: datetime | None = None) -> list[tuple[str, m.TrainingRun, int]]:
        """(character, its last run, golden images since) for each character whose last run is older than
        `retrain_every_s` and that has golden images collected after it."""
        every = self.rt.settings.retrain_every_s
        if not every:
            return []
        now = now or m.utcnow()
        async with self.rt.db.session() as s:
            last = (
                select(m.TrainingRun.character_id, func.max(m.TrainingRun.created_at).label("at"))
                .group_by(m.TrainingRun.character_id)
                .subquery()
            )
            rows = (
                await s.execute(
                    select(m.TrainingRun)
                    .join(last, (m.TrainingRun.character_id == last.c.character_id))
                    .where(m.TrainingRun.created_at == last.c.at)
                )
            ).scalars()
            out = []
            for run in rows:
                at = m.aware(run.created_at)
                if now - at < timedelta(seconds=every):
                    continue
                fresh = await s.scalar(
                    select(func.count())
                    .select_from(m.GoldenImage)
                    .where(m.GoldenImage.character_id == run.character_id, m.GoldenImage.collected_at > at)
                )
                if fresh:
                    out.append((run.character_id, run, int(fresh)))
        return out

    async def run_due(self, now: datetime | None = None) -> list[m.TrainingRun]:
        """The time trigger: start what is due."""
        started = []
        for character_id, last, fresh in await self.due(now):
            run = await self.start(
                character_id,
                f"weekly:{last.id}",
                f"{fresh} new golden images since run {last.id} of {m.aware(last.created_at):%Y-%m-%d}",
            )
            if run is not None:
                started.append(run)
        return started

    async def loop(self) -> None:
        while True:
            await asyncio.sleep(self.rt.settings.schedule_every_s)
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the training schedule's round failed")


__all__ = ["RETRAIN", "LearningTriggers"]
