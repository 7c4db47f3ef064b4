"""Tables of the trainer: golden images, feedback seen, datasets, training runs and the LoRA registry
(the seed checklist's `LoraModel`, task 2.1)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from idlock.db import aware, make_base, utcnow  # noqa: F401 (re-exported to the service)

#: 2: idr_observations and learning_decisions (the degradation watch)
SCHEMA_VERSION = 2

Base = make_base("trainer", type_annotation_map={dict[str, Any]: JSON, list[Any]: JSON})

# LoRA statuses
TRAINING = "training"
VALIDATING = "validating"
ACTIVE = "active"
ARCHIVED = "archived"
REJECTED = "rejected"

# training run states
RUN_QUEUED = "queued"
RUN_RUNNING = "running"
RUN_SUCCEEDED = "succeeded"
RUN_FAILED = "failed"


class GoldenImage(Base):
    __tablename__ = "golden_images"
    __table_args__ = (UniqueConstraint("job_id"), Index(None, "character_id", "collected_at"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    character_id: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[str] = mapped_column(String(128), default="")
    job_id: Mapped[str] = mapped_column(String(64))
    image: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # ImageRef as proto JSON
    prompt: Mapped[str] = mapped_column(Text, default="")
    scene_index: Mapped[int] = mapped_column(Integer, default=0)
    idr_raw: Mapped[float] = mapped_column(Float, default=0.0)
    idr_calibrated: Mapped[float] = mapped_column(Float, default=0.0)
    encoder: Mapped[str] = mapped_column(String(32), default="")
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # StateTags as proto JSON
    #: the owner rated the output up: taken first when a dataset is built
    boosted: Mapped[bool] = mapped_column(Boolean, default=False)
    collected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Feedback(Base):
    """Ratings seen on feedback.recorded, kept so a rating that arrives before job.succeeded still counts."""

    __tablename__ = "feedback"

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    character_id: Mapped[str] = mapped_column(String(64), default="")
    rating: Mapped[str] = mapped_column(String(8))  # "up" | "down"
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("character_id", "version"),)

    id: Mapped[str] = mapped_column(String(96), primary_key=True)
    character_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    uri: Mapped[str] = mapped_column(Text)  # URI of metadata.json
    prefix: Mapped[str] = mapped_column(Text)  # object key prefix lora_datasets/<character>/v<k>/
    resolution: Mapped[int] = mapped_column(Integer)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrainingRun(Base):
    __tablename__ = "training_runs"
    __table_args__ = (Index(None, "character_id"),)

    id: Mapped[str] = mapped_column(String(96), primary_key=True)
    character_id: Mapped[str] = mapped_column(String(64))
    dataset_uri: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=RUN_QUEUED)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int] = mapped_column(Integer, default=0)
    loss: Mapped[float] = mapped_column(Float, default=0.0)
    eta_s: Mapped[float] = mapped_column(Float, default=0.0)
    lora_id: Mapped[str] = mapped_column(String(128), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LoraModel(Base):
    __tablename__ = "lora_models"
    __table_args__ = (
        UniqueConstraint("character_id", "version"),
        # at most one active LoRA per character, enforced by the database as well as the code
        Index(
            "uq_lora_models_one_active",
            "character_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)  # lora_<character>_v<k>
    character_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    file_uri: Mapped[str] = mapped_column(Text, default="")
    file_sha256: Mapped[str] = mapped_column(String(64), default="")
    training_images: Mapped[int] = mapped_column(Integer, default=0)
    baseline_idr: Mapped[float] = mapped_column(Float, default=0.0)
    final_idr: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(16), default=TRAINING)
    run_id: Mapped[str] = mapped_column(String(96), default="")
    dataset_uri: Mapped[str] = mapped_column(Text, default="")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class IdrObservation(Base):
    """The calibrated IDR of one succeeded job of a character (its result as delivered), with the LoRA that made
    it: what the degradation watch compares."""

    __tablename__ = "idr_observations"
    __table_args__ = (Index(None, "character_id", "observed_at"),)

    job_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    character_id: Mapped[str] = mapped_column(String(64))
    idr: Mapped[float] = mapped_column(Float)
    encoder: Mapped[str] = mapped_column(String(64), default="")
    provider: Mapped[str] = mapped_column(String(64), default="")
    lora_id: Mapped[str] = mapped_column(String(128), default="")
    kind: Mapped[str] = mapped_column(String(8), default="image")
    observed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LearningDecisionRow(Base):
    """What the self-learning loop decided for a character, and why."""

    __tablename__ = "learning_decisions"
    __table_args__ = (Index(None, "character_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    character_id: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    lora_id: Mapped[str] = mapped_column(String(128), default="")
    recent_idr: Mapped[float] = mapped_column(Float, default=0.0)
    baseline_idr: Mapped[float] = mapped_column(Float, default=0.0)
    recent_jobs: Mapped[int] = mapped_column(Integer, default=0)
    baseline_jobs: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


async def _add_watch_tables(conn: Any) -> None:
    """2: the degradation watch's tables are new; create_all adds them after this step."""


#: upgrade steps by the version they bring a stored schema to
UPGRADES = {2: _add_watch_tables}
