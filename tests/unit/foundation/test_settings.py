"""Settings: every field described, the README table generated from them, bad values fail fast by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from idlock.config_docs import config_table, readme_table, settings_classes
from idlock.settings import DatabaseSettings, NatsSettings

ROOT = Path(__file__).resolve().parents[3]


def test_every_settings_field_is_described() -> None:
    missing = [
        f"{cls.__name__}.{name}"
        for cls in settings_classes()
        for name, field in cls.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert missing == []


def test_each_component_has_its_own_env_prefix() -> None:
    prefixes = [cls.model_config.get("env_prefix") for cls in settings_classes()]
    service_prefixes = [p for p in prefixes if p not in ("IDLOCK_",)]
    assert len(service_prefixes) == len(set(service_prefixes))


def test_readme_configuration_table_matches_settings() -> None:
    assert readme_table(ROOT / "README.md") == config_table(), (
        "README is stale: paste the output of `idlock config`"
    )


def test_env_overrides_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDLOCK_NATS_URL", "nats://10.0.0.1:4333")
    assert NatsSettings().url == "nats://10.0.0.1:4333"
    monkeypatch.setenv("IDLOCK_NATS_SETUP_TIMEOUT_S", "12.5")
    assert NatsSettings().setup_timeout_s == 12.5
    monkeypatch.setenv("IDLOCK_NATS_SETUP_TIMEOUT_S", "0")
    with pytest.raises(ValidationError, match="setup_timeout_s"):
        NatsSettings()
    monkeypatch.delenv("IDLOCK_NATS_SETUP_TIMEOUT_S")
    monkeypatch.setenv("IDLOCK_DATABASE_URL", "postgres://u@h/db")
    assert DatabaseSettings().url == "postgresql+asyncpg://u@h/db"
    monkeypatch.setenv("IDLOCK_DATABASE_URL", "mysql://u@h/db")
    with pytest.raises(ValidationError, match="postgresql"):
        DatabaseSettings()


@pytest.mark.parametrize(
    ("module", "variable", "value"),
    [
        ("services.refiner", "IDLOCK_REFINER_PORT", "not-a-port"),
        ("services.refiner", "IDLOCK_PEER_BALANCING", "random"),
        ("services.refiner", "IDLOCK_DATABASE_URL", "mysql://u@h/db"),
        ("services.refiner", "IDLOCK_MESH_TOKEN_KEY", "too-short"),
        ("services.trainer", "IDLOCK_IDENTITY_ENCODER", "facenet"),
        ("services.render", "IDLOCK_MODERATION_OUTPUT_MIN_SCORE", "2"),
        ("services.render", "IDLOCK_RENDER_HELD_RENDER_MAX_AGE_S", "0"),
        ("services.refiner", "IDLOCK_REFINER_REFERENCE_CACHE_MAX_AGE_S", "0"),
        ("services.identity", "IDLOCK_IDENTITY_REFERENCE_CACHE_MAX_AGE_S", "-5"),
        ("services.orchestrator", "IDLOCK_MODERATION_ENABLED", "perhaps"),
        ("gateway", "IDLOCK_GATEWAY_PORT", "not-a-port"),
        ("gateway", "IDLOCK_PEER_BALANCING", "random"),
        ("gateway", "IDLOCK_STORAGE_BACKEND", "tape"),
    ],
)
def test_a_process_refuses_bad_configuration_naming_the_variable(
    module: str, variable: str, value: str
) -> None:
    env = dict(os.environ, **{variable: value})
    proc = subprocess.run(
        [sys.executable, "-m", module],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    assert variable in proc.stderr and "Traceback" not in proc.stderr
