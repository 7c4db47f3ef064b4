"""Tables of the orchestrator: jobs (the source of truth for job state), usage records, feedback."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from idlock.db import add_columns, aware, make_base, utcnow  # noqa: F401 (re-exported to the service)

SCHEMA_VERSION = 2

Base = make_base("orchestrator", type_annotation_map={dict[str, Any]: JSON, list[Any]: JSON})

QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
NEEDS_MORE_REFS = "needs_more_refs"
CANCELLED = "cancelled"
ACTIVE = (QUEUED, RUNNING)
TERMINAL = (SUCCEEDED, FAILED, NEEDS_MORE_REFS, CANCELLED)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(128))
    character_id: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str] = mapped_column(Text)
    pose_image_uri: Mapped[str] = mapped_column(Text, default="")
    style_overrides: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: GenerationOptions as proto JSON
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(20), default=QUEUED)
    #: the step running now (or the last one reached)
    step: Mapped[str] = mapped_column(String(20), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    #: re-enqueues by the reconciler
    requeues: Mapped[int] = mapped_column(Integer, default=0)
    #: step name -> its result, so a redelivered job skips what is done
    checkpoint: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result_image: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error_code: Mapped[str] = mapped_column(String(64), default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    lease_owner: Mapped[str] = mapped_column(String(64), default="")
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: set when the job's character was erased: the row is a tombstone (id, owner, status, times; no content)
    #: and the API answers as if the job never was
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        UniqueConstraint("owner_id", "idempotency_key"),
        Index("ix_jobs_owner_created", "owner_id", "created_at", "id"),
        Index("ix_jobs_status_updated", "status", "updated_at"),
        Index("ix_jobs_character", "character_id"),
    )


async def _v2_erasure(conn: Any) -> None:
    await add_columns("jobs", "erased_at TIMESTAMP WITH TIME ZONE")(conn)
    await conn.execute(text("CREATE INDEX IF NOT EXISTS ix_jobs_character ON jobs (character_id)"))


#: upgrade steps of earlier schema versions, by the version they bring the tables to
UPGRADES = {2: _v2_erasure}


class Usage(Base):
    """One row per finished job that rendered: what it cost (never charged twice: the job id is the key)."""

    __tablename__ = "usage"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(128), index=True)
    character_id: Mapped[str] = mapped_column(String(64))
    provider: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(128), default="")
    estimated_cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    total_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Feedback(Base):
    """Thumbs up/down of an owner on a job; a second rating replaces the first."""

    __tablename__ = "feedback"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    character_id: Mapped[str] = mapped_column(String(64))
    rating: Mapped[str] = mapped_column(String(8))  # "up" | "down"
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
