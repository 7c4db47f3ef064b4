"""The orchestrator's domain metrics (`idlock.metrics`): jobs submitted and ended, their time, their steps, the
IDR of their results, what the refine, copy and moderation gates did, and the job queue read from JetStream.

Labels are kinds, statuses, steps, encoders and outcomes: never a job, character or user id.
"""

from __future__ import annotations

from idlock import metrics as m
from idlock.delivered import delivered_idr
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator.flow import REFINER_UNAVAILABLE
from services.orchestrator.models import Job, aware, utcnow


def kind_of(job: Job) -> str:
    return "video" if (job.options or {}).get("video") else "image"


def submitted(job: Job) -> None:
    m.JOBS_SUBMITTED.labels(kind_of(job)).inc()


def started(job: Job, here: bool) -> None:
    m.JOBS_STARTED.labels(kind_of(job), "here" if here else "queue").inc()


def prompt_checked(refused: bool) -> None:
    m.MODERATION.labels("prompt", "refused" if refused else "passed").inc()


def step_done(job: Job, step: str, seconds: float) -> None:
    m.STEP_SECONDS.labels(kind_of(job), step).observe(seconds)


def waited(peer: str) -> None:
    m.JOBS_WAITING.labels(peer or "peer").inc()


def ended(job: Job, status: str, code: str = "", metrics: pb.JobMetrics | None = None) -> None:
    """A job's end: counted, timed from its submission, and what its result measured."""
    kind = kind_of(job)
    m.JOBS_FINISHED.labels(kind, status).inc()
    created = aware(job.created_at)
    if created is not None:
        m.JOB_SECONDS.labels(kind, status).observe(max(0.0, (utcnow() - created).total_seconds()))
    if code == "moderated":
        m.MODERATION.labels("output", "blocked").inc()
    elif code == "near_copy":
        m.NEAR_COPIES.labels("failed").inc()
    if metrics is not None:
        _result(kind, metrics)


def _result(kind: str, metrics: pb.JobMetrics) -> None:
    before, after = metrics.idr_before, metrics.idr_after
    if before.encoder:
        m.IDR.labels(before.encoder, "before").observe(before.calibrated)
    if metrics.refined and after.encoder:
        m.IDR.labels(after.encoder, "after").observe(after.calibrated)
    final = delivered_idr(metrics)
    if final is not None:
        m.IDR.labels(final.encoder, "final").observe(final.calibrated)
    if kind == "image":
        m.REFINE_GATE.labels(_refine_outcome(metrics)).inc()
    if metrics.regenerated and metrics.copy_note.startswith("regenerated"):
        m.NEAR_COPIES.labels("regenerated").inc()  # the new render is not a copy
    elif metrics.copy.near_copy:
        m.NEAR_COPIES.labels("flagged").inc()
    if metrics.moderation:
        m.MODERATION.labels(
            "output", "not_classified" if "not classified" in metrics.moderation else "passed"
        ).inc()


def _refine_outcome(metrics: pb.JobMetrics) -> str:
    if not metrics.refine_needed:
        return "not_needed"
    if metrics.refined:
        return "refined"
    return "unavailable" if metrics.refine_note.startswith(REFINER_UNAVAILABLE) else "kept_original"


def queue(pending: int, in_flight: int) -> None:
    """The job queue: messages no worker has been given, and those plus the ones being worked on."""
    m.QUEUE_DEPTH.set(pending)
    m.QUEUE_LAG.set(pending + in_flight)


__all__ = ["ended", "kind_of", "prompt_checked", "queue", "step_done", "submitted", "waited"]
