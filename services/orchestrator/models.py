"""Tables of the orchestrator: jobs (the source of truth for job state), usage records, feedback, and the outbox of
messages that leave with a job's change (published by `outbox.Relay`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from idlock.db import add_columns, aware, make_base, utcnow  # noqa: F401 (re-exported to the service)

SCHEMA_VERSION = 4

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
    #: the peer (or "storage") a step is waiting for, and since when: the retry window survives a restart
    waiting_for: Mapped[str] = mapped_column(String(32), default="")
    waiting_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: set when the job passed its effect boundary (recording its scene): a cancel after it comes too late
    committed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: a cancel that came too late (the job goes on to succeed, and says so)
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: a scene with several characters: [{character_id, role, name}], the job's own character first; None for one
    cast_members: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        UniqueConstraint("owner_id", "idempotency_key"),
        Index("ix_jobs_owner_created", "owner_id", "created_at", "id"),
        Index("ix_jobs_status_updated", "status", "updated_at"),
        Index("ix_jobs_character", "character_id"),
    )


def with_values(job: Job, values: Mapping[str, Any]) -> Job:
    """A detached copy of `job` with some columns set (what a statement wrote)."""
    row = {c.key: getattr(job, c.key) for c in Job.__table__.c}
    row.update(values)
    return Job(**row)


async def _v2_erasure(conn: Any) -> None:
    await add_columns("jobs", "erased_at TIMESTAMP WITH TIME ZONE")(conn)
    await conn.execute(text("CREATE INDEX IF NOT EXISTS ix_jobs_character ON jobs (character_id)"))


async def _v3_outages(conn: Any) -> None:
    await add_columns(
        "jobs",
        "waiting_for VARCHAR(32) DEFAULT ''",
        "waiting_since TIMESTAMP WITH TIME ZONE",
        "committed_at TIMESTAMP WITH TIME ZONE",
        "cancel_requested_at TIMESTAMP WITH TIME ZONE",
    )(conn)  # the outbox table is new: create_all adds it


#: upgrade steps of earlier schema versions, by the version they bring the tables to
UPGRADES = {2: _v2_erasure, 3: _v3_outages, 4: add_columns("jobs", "cast_members JSON")}


class OutboxMessage(Base):
    """A message to publish, written in the transaction of the change it announces (a job created, ended,
    cancelled), and deleted once NATS acknowledged it. `msg_id` is the Nats-Msg-Id: a message published twice
    (two relays, a crash between publish and delete) is stored once by the stream."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    #: "work" (a GenerateJobWork on idlock.jobs.generate) or "event:<verb>" (a JobEvent)
    kind: Mapped[str] = mapped_column(String(40))
    msg_id: Mapped[str] = mapped_column(String(200))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    #: trace context of the change, carried into the NATS headers
    headers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    #: not before this time (a failed publish backs off)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


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
