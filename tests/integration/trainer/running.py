"""A trainer service in the test's process, configured by `env`, with a stand-in scorer where a test gives one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import grpc

from services.trainer.decisions import ScorerFactory
from services.trainer.server import TrainerServicer, spec_for
from services.trainer.settings import TrainerSettings
from tests.harness import started_service


@contextlib.asynccontextmanager
async def running_trainer(
    data_dir: Path, env: dict[str, str], scorer_factory: ScorerFactory | None = None
) -> AsyncIterator[tuple[TrainerServicer, grpc.aio.Channel]]:
    with mock.patch.dict(os.environ, {**env, "IDLOCK_DATA_DIR": str(data_dir), "IDLOCK_TRAINER_PORT": "0"}):
        settings = TrainerSettings()
        servicer = TrainerServicer(settings, face_finder=None, scorer_factory=scorer_factory)
    async with started_service("trainer", data_dir, spec=spec_for(servicer), settings=settings, **env) as (
        _svc,
        channel,
    ):
        yield servicer, channel
