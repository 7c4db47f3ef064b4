"""Identity service settings (env prefix IDLOCK_IDENTITY_): the face engine's (`idlock.faces.settings`) and the
service's own."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from idlock.faces.settings import FaceSettings
from idlock.settings import ModelServiceSettings


class IdentitySettings(ModelServiceSettings, FaceSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_IDENTITY_")
    component: ClassVar[str] = "identity"

    workers: int = Field(
        2,
        ge=1,
        le=64,
        description="Workers running model work (detect, embed, score): processes with isolation=process, threads "
        "with isolation=thread. About one per CPU the pod may use.",
    )
    isolation: Literal["process", "thread"] = Field(
        "process",
        description="Where model work runs: process (worker processes, so the service's loop, health probes and "
        "other RPCs never wait behind a face; each worker holds its own copy of the models) or thread (in this "
        "process: less memory, and the loop stalls ~70 ms per face with dlib).",
    )
    batch_max: int = Field(
        8,
        ge=1,
        le=256,
        description="Scene scorings that arrive while every worker is busy wait together and go to the next free "
        "worker as one batch of at most this many (one embedding pass over all their faces: what a GPU encoder "
        "is fast at; dlib on a CPU gains no compute, only fewer hand-offs). 1: no batching.",
    )
    protected_gallery_dir: Path | None = Field(
        None,
        description="A folder of photos (one face each; a sub-folder per person) of identities that may not "
        "become characters: a reference matching one at the pass level is refused (protected_identity).",
    )
    reference_cache_max_age_s: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="How long a reference photo's face print stays in memory after it was computed (it is biometric "
        "data, and an erasure cannot name it): a character's erasure leaves none of its prints here for longer.",
    )
