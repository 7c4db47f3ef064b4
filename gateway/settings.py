"""Settings of the REST gateway (env prefix IDLOCK_GATEWAY_)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from idlock.settings import DEFAULT_PORTS, IdlockSettings


class GatewaySettings(IdlockSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_GATEWAY_")
    component: ClassVar[str] = "gateway"

    host: str = Field("127.0.0.1", description="Address the HTTP server binds.")
    port: int = Field(DEFAULT_PORTS["gateway"], ge=0, le=65535, description="HTTP port of the REST gateway.")
    health_timeout_s: float = Field(2.0, gt=0, description="Deadline of each component health check (seconds).")
