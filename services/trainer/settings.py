"""Settings of the trainer service (env prefix IDLOCK_TRAINER_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from idlock.settings import GrpcServerSettings


class TrainerSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_TRAINER_")
    component: ClassVar[str] = "trainer"
