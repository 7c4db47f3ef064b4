"""Settings of the orchestrator service (env prefix IDLOCK_ORCHESTRATOR_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic_settings import SettingsConfigDict

from idlock.settings import GrpcServerSettings


class OrchestratorSettings(GrpcServerSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_ORCHESTRATOR_")
    component: ClassVar[str] = "orchestrator"
