"""SQLAlchemy 2 models of the memory service: characters, episodes, summaries.

`Base` is this service's own declarative base from `idlock.db.make_base("memory")`: its tables live in the schema
`memory` (Postgres; translated away on SQLite) and the service creates them with `Database.migrate(Base.metadata)`.
Outside `idlock.db`, an engine needs `schema_translate_map={"memory": None}` on SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from idlock.db import add_columns, make_base, new_tables_only

STATUS_READY = "ready"
STATUS_NEEDS_MORE_REFS = "needs_more_refs"
KINDS = ("image", "video")
TAG_CATEGORIES = ("clothing", "injuries", "props", "setting", "mood")


def utcnow() -> datetime:
    return datetime.now(UTC)


#: version of these models that `Database.migrate` records (2: episodes.context, episodes.provider_label;
#: 3: episodes.copy_check; 4: erasures; 5: episodes.cast_members; 6: story_folds)
SCHEMA_VERSION = 6

Base = make_base("memory", type_annotation_map={dict[str, Any]: JSON, list[Any]: JSON})


class Character(Base):
    __tablename__ = "characters"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(128), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    sheet: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    consent_given: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    status: Mapped[str] = mapped_column(String(32), default=STATUS_READY)
    status_reasons: Mapped[list[Any]] = mapped_column(JSON, default=list)
    encoder: Mapped[str] = mapped_column(String(64), default="")
    identity_dim: Mapped[int] = mapped_column(Integer, default=0)
    #: the stored reference images: [{uri, sha256, mime, width, height}, ...] in upload order
    ref_image_refs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: the identity service's per-reference quality report (proto JSON field names), returned on retried creates
    reference_quality: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: bumped by every change that alters composed prompts (sheet, identity, episodes, summaries)
    memory_version: Mapped[int] = mapped_column(Integer, default=0)
    #: scene indexes handed out so far (the next episode gets episode_count + 1)
    episode_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_characters_owner_created", "owner_id", "created_at", "id"),)


class Episode(Base):
    __tablename__ = "episodes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    character_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("characters.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[str] = mapped_column(String(128))
    scene_index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8), default="image")
    prompt: Mapped[str] = mapped_column(Text, default="")
    result_refs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    face_embedding: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    idr_raw: Mapped[float | None] = mapped_column(Float, nullable=True)
    idr_calibrated: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: category -> names added / removed in this scene
    tags_added: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tags_removed: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    dialogue: Mapped[str] = mapped_column(Text, default="")
    frame_idrs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: how the tags were extracted: "vision:<model>" or "heuristic"
    state_source: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: what the scene was composed from (`SceneContext` as JSON, proto field names); None before version 2
    context: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: what rendered the scene (e.g. "offline/compositor"); "" before version 2
    provider_label: Mapped[str] = mapped_column(String(128), default="", server_default="")
    #: the scene's face against the references (`CopyCheck` as JSON, proto field names); None before version 3
    copy_check: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    #: the other characters of a scene with several ([{character_id, name, role}]); None for a scene of one
    cast_members: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)

    __table_args__ = (
        UniqueConstraint("character_id", "job_id", name="uq_episodes_character_job"),
        UniqueConstraint("character_id", "scene_index", name="uq_episodes_character_scene"),
    )

    @property
    def text(self) -> str:
        return episode_text(self.prompt, self.description)


def episode_text(prompt: str | None, description: str | None) -> str:
    """What a scene was about: its prompt and its description (for state heuristics and retrieval). A description
    that only repeats the prompt (the heuristic state extractor's) is not said twice."""
    prompt, description = (prompt or "").strip(), (description or "").strip()
    if not description or description in prompt:
        return prompt
    if prompt and prompt in description:
        return description
    return f"{prompt} {description}".strip()


class Summary(Base):
    __tablename__ = "summaries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    character_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("characters.id", ondelete="CASCADE"), index=True
    )
    up_to_scene: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    engine: Mapped[str] = mapped_column(String(32))  # "llm" | "digest"
    fallback_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("character_id", "up_to_scene", name="uq_summaries_character_scene"),)


class StoryFold(Base):
    """A character's story state folded up to `last_scene` (`state.StateFold.to_dict`), so that a context build
    on a replica that has not seen the character replays only the scenes after it, not the whole story. A cache of
    what the episodes say: dropping it loses nothing."""

    __tablename__ = "story_folds"

    character_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("characters.id", ondelete="CASCADE"), primary_key=True
    )
    last_scene: Mapped[int] = mapped_column(Integer)
    fold: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Erasure(Base):
    """A character's erasure, written before its first store is touched: one left unfinished by a crash is
    taken up again when the service starts. Once finished it keeps who owned the character, when, and how much
    went (no content)."""

    __tablename__ = "erasures"

    character_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner_id: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    #: store -> items removed
    removed: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


#: upgrade steps of earlier schema versions, by the version they bring the tables to
UPGRADES = {
    2: add_columns("episodes", "context JSON", "provider_label VARCHAR(128) NOT NULL DEFAULT ''"),
    3: add_columns("episodes", "copy_check JSON"),
    4: new_tables_only,
    5: add_columns("episodes", "cast_members JSON"),
    6: new_tables_only,
}
