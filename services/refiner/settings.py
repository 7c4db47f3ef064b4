"""Settings of the refiner service (env prefix IDLOCK_REFINER_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from idlock.settings import GrpcServerSettings


class RefinerSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_REFINER_")
    component: ClassVar[str] = "refiner"
