"""The degradation watch (seed 3.1, 3.2): every succeeded job's calibrated IDR is kept per character, with the LoRA
that made it; the mean of the recent jobs is compared with a baseline, and a drop beyond the margin is a decision,
recorded with its reason and published (`idlock.events.learning.decided`):

- a LoRA active while the drop happened, whose jobs' IDR fell below the jobs' before its activation, is rolled
  back at once (`rolled_back`: the LoRA active before it, or none, is active again);
- otherwise the character is `degraded`: its recent jobs fell below the ones before them (said once per drop).

Only numbers are compared here: what a job's IDR is comes from its `job.succeeded` event (the delivered result:
refined when refined, a video's mean frame IDR)."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from idlock.delivered import delivered_idr
from idlock.v1 import events_pb2
from services.trainer import models as m
from services.trainer.decisions import LoraDecisions
from services.trainer.journal import DEGRADED, ROLLED_BACK, IdrHistory, record_decision
from services.trainer.runtime import TrainerRuntime

log = logging.getLogger("idlock.trainer.watch")


@dataclass(frozen=True)
class Drop:
    """A recent window of IDRs against its baseline."""

    recent: list[float]
    baseline: list[float]

    @property
    def recent_mean(self) -> float:
        return statistics.fmean(self.recent)

    @property
    def baseline_mean(self) -> float:
        return statistics.fmean(self.baseline)

    def beyond(self, margin: float, min_jobs: int) -> bool:
        enough = len(self.recent) >= min_jobs and len(self.baseline) >= min_jobs
        return enough and self.recent_mean < self.baseline_mean - margin


class DegradationWatch:
    def __init__(self, rt: TrainerRuntime, decisions: LoraDecisions) -> None:
        self.rt = rt
        self.decisions = decisions
        #: called with a `degraded` decision (the triggers retrain)
        self.on_degraded: Callable[[m.LearningDecisionRow], Awaitable[None]] | None = None

    @property
    def history(self) -> IdrHistory:
        assert self.rt.db is not None, "the trainer's runtime is not open"
        return IdrHistory(self.rt.db)

    async def observe(self, ev: events_pb2.JobEvent) -> m.LearningDecisionRow | None:
        """Keep a succeeded job's IDR and decide what it says about its character (None: nothing to decide)."""
        scored = delivered_idr(ev.metrics)
        if scored is None or not ev.character_id or not ev.job_id:
            return None
        idr, encoder, kind = scored
        at = ev.at.ToDatetime(tzinfo=m.utcnow().tzinfo) if ev.HasField("at") else m.utcnow()
        row = m.IdrObservation(
            job_id=ev.job_id,
            character_id=ev.character_id,
            idr=idr,
            encoder=encoder,
            provider=ev.metrics.provider,
            lora_id=ev.metrics.lora_id,
            kind=kind,
            observed_at=at,
        )
        if not await self.history.add(row):
            return None
        return await self.judge(ev.character_id)

    async def judge(self, character_id: str) -> m.LearningDecisionRow | None:
        s, h = self.rt.settings, self.history
        active = await self.rt.repo.get_active(character_id)
        if active is not None and active.activated_at is not None and s.watch_rollback:
            since = m.aware(active.activated_at)
            drop = Drop(
                await h.idrs(character_id, s.watch_window, since=since, lora_id=active.id),
                await h.idrs(character_id, s.watch_window, before=since),
            )
            if drop.beyond(s.watch_margin, s.watch_min_jobs):
                await self.decisions.rollback(character_id, reason="")  # the watch says why, with its figures
                why = (
                    f"the {len(drop.recent)} jobs made with LoRA {active.id} averaged a calibrated IDR of "
                    f"{drop.recent_mean:.3f}, below the {drop.baseline_mean:.3f} of the {len(drop.baseline)} jobs "
                    f"before its activation by more than {s.watch_margin:.3f}"
                )
                return await self._decide(character_id, ROLLED_BACK, why, active.id, drop)
            return None
        last = await h.last_decision(character_id)
        # after a rollback only the jobs made since count: the rolled-back LoRA's are its own story
        floor = m.aware(last.created_at) if last is not None and last.decision == ROLLED_BACK else None
        drop = Drop(
            await h.idrs(character_id, s.watch_window, since=floor),
            await h.idrs(character_id, s.watch_window, since=floor, skip=s.watch_window),
        )
        if not drop.beyond(s.watch_margin, s.watch_min_jobs):
            return None
        if last is not None and last.decision == DEGRADED:
            # the same drop, said already: it is said again once a whole new window came after the decision
            since = await h.idrs(character_id, s.watch_window, since=m.aware(last.created_at))
            if len(since) < len(drop.recent):
                return None
        why = (
            f"the last {len(drop.recent)} jobs averaged a calibrated IDR of {drop.recent_mean:.3f}, below the "
            f"{drop.baseline_mean:.3f} of the {len(drop.baseline)} before them by more than {s.watch_margin:.3f}"
        )
        return await self._decide(character_id, DEGRADED, why, active.id if active else "", drop)

    async def _decide(
        self, character_id: str, decision: str, reason: str, lora_id: str, drop: Drop
    ) -> m.LearningDecisionRow:
        row = await record_decision(self.rt, character_id, decision, reason, lora_id, drop)
        if decision == DEGRADED and self.on_degraded is not None:
            await self.on_degraded(row)
        return row


__all__ = [
    "DEGRADED",
    "ROLLED_BACK",
    "DegradationWatch",
    "Drop",
]
