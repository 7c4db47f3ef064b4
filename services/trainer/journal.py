"""The self-learning loop's journal: each succeeded job's calibrated IDR per character (what the degradation watch
compares and the report summarises), and each decision with its reason (published on
`idlock.events.learning.decided`): retrain_requested, activated, rejected, rolled_back, degraded, training_failed.
Read in order, a character's decisions are the history of its learning stages."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select

from idlock import subjects
from idlock.db import Database
from idlock.v1 import events_pb2
from services.trainer import models as m
from services.trainer.runtime import TrainerRuntime

if TYPE_CHECKING:
    from services.trainer.watch import Drop

log = logging.getLogger("idlock.trainer.journal")

# decisions, as a character's learning moves on
RETRAIN = "retrain_requested"
ACTIVATED = "activated"
REJECTED = "rejected"
ROLLED_BACK = "rolled_back"
DEGRADED = "degraded"


class IdrHistory:
    """The observations and decisions tables."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, row: m.IdrObservation) -> bool:
        """Keep one job's IDR; False when the job was seen already (a redelivered event)."""
        async with self.db.session() as s:
            if await s.get(m.IdrObservation, row.job_id) is not None:
                return False
            s.add(row)
        return True

    async def idrs(
        self,
        character_id: str,
        limit: int,
        *,
        since: datetime | None = None,
        before: datetime | None = None,
        lora_id: str | None = None,
        skip: int = 0,
    ) -> list[float]:
        """The newest `limit` IDRs of the character (after `skip` newer ones), optionally in a time range or of
        one LoRA."""
        q = select(m.IdrObservation.idr).where(m.IdrObservation.character_id == character_id)
        if since is not None:
            q = q.where(m.IdrObservation.observed_at >= since)
        if before is not None:
            q = q.where(m.IdrObservation.observed_at < before)
        if lora_id is not None:
            q = q.where(m.IdrObservation.lora_id == lora_id)
        q = q.order_by(m.IdrObservation.observed_at.desc(), m.IdrObservation.job_id.desc())
        async with self.db.session() as s:
            return [float(v) for v in (await s.execute(q.offset(skip).limit(limit))).scalars()]

    async def last_decision(self, character_id: str) -> m.LearningDecisionRow | None:
        q = (
            select(m.LearningDecisionRow)
            .where(m.LearningDecisionRow.character_id == character_id)
            .order_by(m.LearningDecisionRow.created_at.desc())
            .limit(1)
        )
        async with self.db.session() as s:
            return (await s.execute(q)).scalar_one_or_none()

    async def decisions(self, character_id: str) -> list[m.LearningDecisionRow]:
        q = (
            select(m.LearningDecisionRow)
            .where(m.LearningDecisionRow.character_id == character_id)
            .order_by(m.LearningDecisionRow.created_at)
        )
        async with self.db.session() as s:
            return list((await s.execute(q)).scalars())

    async def record(self, row: m.LearningDecisionRow) -> None:
        async with self.db.session() as s:
            s.add(row)


async def record_decision(
    rt: TrainerRuntime,
    character_id: str,
    decision: str,
    reason: str,
    lora_id: str = "",
    drop: Drop | None = None,
) -> m.LearningDecisionRow:
    """Keep a decision of the self-learning loop with its reason, and publish it."""
    row = m.LearningDecisionRow(
        id=f"dec_{uuid.uuid4().hex[:16]}",
        character_id=character_id,
        decision=decision,
        reason=reason,
        lora_id=lora_id,
        recent_idr=drop.recent_mean if drop else 0.0,
        baseline_idr=drop.baseline_mean if drop else 0.0,
        recent_jobs=len(drop.recent) if drop else 0,
        baseline_jobs=len(drop.baseline) if drop else 0,
        created_at=m.utcnow(),
    )
    await IdrHistory(rt.db).record(row)
    log.warning("character %s %s: %s", character_id, decision, reason)
    ev = events_pb2.LearningDecision(
        decision_id=row.id,
        character_id=character_id,
        decision=decision,
        reason=reason,
        lora_id=lora_id,
        recent_idr=row.recent_idr,
        baseline_idr=row.baseline_idr,
        recent_jobs=row.recent_jobs,
        baseline_jobs=row.baseline_jobs,
    )
    ev.at.GetCurrentTime()
    await rt.publish(subjects.LEARNING_DECIDED, ev, row.id)
    return row


__all__ = ["ACTIVATED", "DEGRADED", "REJECTED", "RETRAIN", "ROLLED_BACK", "IdrHistory", "record_decision"]
