"""The owner's report of a character's self-learning: the calibrated IDR of its succeeded jobs overall, per week,
per provider and per LoRA version, its degradation state, the decisions the watch made and why, and how far the
next automatic training is."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select

from idlock.v1 import trainer_service_pb2 as pb
from services.trainer import models as m
from services.trainer.journal import DEGRADED, ROLLED_BACK, IdrHistory
from services.trainer.runtime import TrainerRuntime

#: the newest observations a report reads
MAX_OBSERVATIONS = 10_000
#: the newest observations a report lists one by one (a chart's points)
RECENT_POINTS = 200


@dataclass(frozen=True)
class Stats:
    count: int = 0
    mean: float = 0.0
    std: float = 0.0
    min: float = 0.0

    @classmethod
    def of(cls, values: Iterable[float]) -> Stats:
        v = list(values)
        if not v:
            return cls()
        return cls(len(v), statistics.fmean(v), statistics.pstdev(v), min(v))


@dataclass
class LearningReport:
    character_id: str
    overall: Stats
    by_week: dict[str, Stats] = field(default_factory=dict)
    by_provider: dict[str, Stats] = field(default_factory=dict)
    by_lora: dict[str, Stats] = field(default_factory=dict)
    state: str = "ok"
    decisions: list[m.LearningDecisionRow] = field(default_factory=list)
    golden_images: int = 0
    golden_until_training: int = 0
    stage: str = "idle"
    #: the newest observations, oldest first
    recent: list[m.IdrObservation] = field(default_factory=list)


def _grouped(rows: list[m.IdrObservation], key) -> dict[str, Stats]:
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r.idr)
    return {k: Stats.of(v) for k, v in sorted(groups.items())}


def _week(r: m.IdrObservation) -> str:
    year, week, _ = m.aware(r.observed_at).isocalendar()
    return f"{year}-W{week:02d}"


async def learning_report(rt: TrainerRuntime, character_id: str) -> LearningReport:
    history = IdrHistory(rt.db)
    q = (
        select(m.IdrObservation)
        .where(m.IdrObservation.character_id == character_id)
        .order_by(m.IdrObservation.observed_at.desc())
        .limit(MAX_OBSERVATIONS)
    )
    async with rt.db.session() as s:
        rows = list((await s.execute(q)).scalars())
    decisions = await history.decisions(character_id)
    state = "ok"
    if decisions and decisions[-1].decision in (DEGRADED, ROLLED_BACK):
        last = decisions[-1]
        after = await history.idrs(character_id, rt.settings.watch_window, since=m.aware(last.created_at))
        if len(after) < rt.settings.watch_window:  # no whole window of jobs since: it still stands
            state = last.decision
    goldens = await rt.repo.count_goldens(character_id)
    stage = await learning_stage(rt, character_id, goldens, decisions[-1] if decisions else None)
    n = rt.settings.auto_train_min_images
    return LearningReport(
        character_id=character_id,
        overall=Stats.of(r.idr for r in rows),
        by_week=_grouped(rows, _week),
        by_provider=_grouped(rows, lambda r: r.provider or "unknown"),
        by_lora=_grouped(rows, lambda r: r.lora_id or "none"),
        state=state,
        decisions=decisions,
        golden_images=goldens,
        golden_until_training=(n - goldens % n) if n else 0,
        stage=stage,
        recent=rows[:RECENT_POINTS][::-1],
    )


async def learning_stage(
    rt: TrainerRuntime, character_id: str, goldens: int, last: m.LearningDecisionRow | None
) -> str:
    """idle, collecting, training, validating, active, rejected or rolled_back, from the rows: a run under way
    first, then the newest of a rollback and the active LoRA's activation, then the last LoRA's verdict."""
    async with rt.db.session() as s:
        run = (
            await s.execute(
                select(m.TrainingRun)
                .where(m.TrainingRun.character_id == character_id)
                .order_by(m.TrainingRun.created_at.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
    loras = await rt.repo.list_loras(character_id)
    if run is not None and run.state in (m.RUN_QUEUED, m.RUN_RUNNING):
        lora = next((x for x in loras if x.id == run.lora_id), None)
        return "validating" if lora is not None and lora.status == m.VALIDATING else "training"
    active = next((x for x in loras if x.status == m.ACTIVE), None)
    rolled = last is not None and last.decision == ROLLED_BACK
    if rolled and (active is None or m.aware(last.created_at) >= m.aware(active.activated_at)):
        return "rolled_back"
    if active is not None:
        return "active"
    if loras and loras[-1].status == m.REJECTED:
        return "rejected"
    return "collecting" if goldens else "idle"


def _stats(out: pb.IdrStats, st: Stats) -> pb.IdrStats:
    out.count, out.mean, out.std, out.min = st.count, st.mean, st.std, st.min
    return out


def report_pb(r: LearningReport) -> pb.GetLearningReportResponse:
    out = pb.GetLearningReportResponse(
        character_id=r.character_id,
        state=r.state,
        golden_images=r.golden_images,
        golden_until_training=r.golden_until_training,
        stage=r.stage,
    )
    _stats(out.overall, r.overall)
    for groups, into in (
        (r.by_week, out.by_week),
        (r.by_provider, out.by_provider),
        (r.by_lora, out.by_lora),
    ):
        for key, st in groups.items():
            _stats(into.add(key=key).stats, st)
    for d in r.decisions:
        rec = out.decisions.add(
            decision=d.decision,
            reason=d.reason,
            lora_id=d.lora_id,
            recent_idr=d.recent_idr,
            baseline_idr=d.baseline_idr,
            recent_jobs=d.recent_jobs,
            baseline_jobs=d.baseline_jobs,
        )
        rec.at.FromDatetime(m.aware(d.created_at))
    for o in r.recent:
        point = out.recent.add(idr=o.idr, lora_id=o.lora_id, provider=o.provider, job_id=o.job_id)
        point.at.FromDatetime(m.aware(o.observed_at))
    return out


__all__ = ["LearningReport", "Stats", "learning_report", "report_pb"]
