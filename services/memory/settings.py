"""Settings of the memory service (env prefix IDLOCK_MEMORY_)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from idlock.settings import GrpcServerSettings


class MemorySettings(GrpcServerSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_MEMORY_")
    component: ClassVar[str] = "memory"

    # merge (seed §8)
    w_s: float = Field(0.6, ge=0, le=1, description="Weight of the semantic identity vector in the merge.")
    w_e: float = Field(0.4, ge=0, le=1, description="Total weight of the episodic vectors in the merge.")
    alpha: float = Field(
        0.6, gt=0, le=1, description="Decay base: episode i (newest = 1) weighs alpha^(i-1)."
    )
    recent_k: int = Field(
        3, ge=0, le=50, description="Most recent episodes used for the merge and the prompt."
    )
    relevant_k: int = Field(
        2, ge=0, le=50, description="Earlier episodes retrieved by text similarity to the new prompt."
    )
    ended_window: int = Field(
        3, ge=1, le=50, description="The prompt lists attributes that ended within this many latest scenes."
    )

    # consolidation
    consolidate_every_images: int = Field(
        5, ge=1, description="Write a story-so-far summary every N image scenes."
    )
    consolidate_every_videos: int = Field(
        3, ge=1, description="Write a story-so-far summary every N video scenes."
    )
    summary_max_chars: int = Field(
        1200, ge=100, description="Longest story-so-far summary kept (characters)."
    )

    # prompt
    prompt_max_chars: int = Field(
        2000, ge=16, le=100_000, description="Longest user prompt accepted (characters)."
    )
    composed_max_chars: int = Field(
        8000, ge=256, description="Longest composed prompt accepted from the LLM formatter (characters)."
    )
    deny_list: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Terms refused in prompts (JSON list or comma-separated); a match is INVALID_ARGUMENT naming it.",
    )
    master_style_guide: str = Field(
        "Photorealistic, natural lighting, consistent character identity across scenes, sharp facial detail.",
        description="The master style guide at the top of every composed prompt.",
    )

    # LLM (Groq)
    groq_api_key: SecretStr = Field(
        SecretStr(""), description="Groq API key; empty: the deterministic template engine only."
    )
    groq_base_url: str = Field(
        "", description="Groq API base URL; empty: the client's default (api.groq.com)."
    )
    groq_model: str = Field(
        "llama-3.1-8b-instant", description="Groq model used to format prompts and summaries."
    )
    llm_timeout_s: float = Field(10.0, gt=0, description="Timeout of one LLM request (seconds).")
    llm_max_retries: int = Field(
        2, ge=0, le=10, description="Retries of an LLM request on 429/5xx/connection errors."
    )

    # vectors
    vector_engine: Literal["edge", "qdrant"] = Field(
        "edge",
        description=(
            "Vector engine without qdrant_url: 'edge' (Qdrant Edge shards under vector_path, indexed, no server) or"
            " 'qdrant' (qdrant-client's local mode under qdrant_path: scans in Python; tests and comparison)."
            " With qdrant_url set, the Qdrant server is used."
        ),
    )
    vector_path: Path | None = Field(
        None, description="Folder of the Qdrant Edge shards; empty: <data_dir>/vectors."
    )
    qdrant_url: str = Field("", description="Qdrant server URL; empty: the embedded vector_engine.")
    qdrant_path: Path | None = Field(
        None,
        description=(
            "Folder of qdrant-client's local mode; empty: <data_dir>/qdrant. With vector_engine 'edge', points"
            " found there are copied into the Edge shards once."
        ),
    )
    qdrant_api_key: SecretStr = Field(SecretStr(""), description="Qdrant API key (server mode).")
    collection_prefix: str = Field("idlock", description="Prefix of the Qdrant collection names.")
    text_embedder: str = Field(
        "minilm",
        description="Episode text embedder: 'minilm' (all-MiniLM-L6-v2, offline) or 'hashing' (tests).",
    )

    # cache
    kv_bucket: str = Field("idlock_prompt_cache", description="NATS KV bucket of the prompt cache.")
    cache_backend: str = Field(
        "nats",
        description="Cache of LLM-formatted prompts: 'nats' (KV bucket), 'memory' or 'none' (template prompts are "
        "composed at each call, not cached).",
    )
    cache_ttl_s: int = Field(
        7 * 24 * 3600, ge=0, description="Lifetime of cached prompts (seconds); 0: forever."
    )

    # storage and wiring
    db_schema: str = Field(
        "", description="Postgres schema of the memory tables; empty: 'memory'. Ignored on SQLite."
    )
    max_references: int = Field(
        5, ge=1, le=20, description="Most reference images accepted when a character is created."
    )
    identity_timeout_s: float = Field(
        60.0, gt=0, description="Deadline of the call to the identity service that encodes the references."
    )
    shutdown_consolidation_s: float = Field(
        10.0,
        ge=0,
        description="On shutdown, how long to wait for story summaries still being written (seconds); one cut "
        "off is written when the character's next episode is recorded.",
    )
    nats_wait_s: float = Field(
        10.0,
        gt=0,
        description=(
            "How long start-up waits for NATS; without it events are not published and the prompt cache is "
            "kept in memory."
        ),
    )

    @field_validator("deny_list", mode="before")
    @classmethod
    def _split_deny(cls, v: object) -> object:
        if isinstance(v, str):
            s = v.strip()
            if s.startswith("["):
                return json.loads(s)
            return [x.strip() for x in s.split(",") if x.strip()]
        return v

    @field_validator("cache_backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        if v not in ("nats", "memory", "none"):
            raise ValueError("cache_backend must be nats, memory or none")
        return v

    @field_validator("text_embedder")
    @classmethod
    def _embedder(cls, v: str) -> str:
        if v not in ("minilm", "hashing"):
            raise ValueError("text_embedder must be minilm or hashing")
        return v

    @model_validator(mode="after")
    def _weights(self) -> MemorySettings:
        if self.w_s + self.w_e <= 0:
            raise ValueError("w_s + w_e must be > 0")
        return self
