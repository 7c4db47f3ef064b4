"""Identity service settings (env prefix IDLOCK_IDENTITY_): the face engine's (`idlock.faces.settings`) and the
service's own."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

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
        description="Threads running model work (decode, detect, embed) for the gRPC servicer.",
    )
    protected_gallery_dir: Path | None = Field(
        None,
        description="A folder of photos (one face each; a sub-folder per person) of identities that may not "
        "become characters: a reference matching one at the pass level is refused (protected_identity).",
    )
