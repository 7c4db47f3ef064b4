"""Start a real service (its own `build()`) on port 0 inside the test's event loop."""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import grpc

from idlock import grpc_client
from idlock.grpc_server import GrpcService

FACES_DIR = Path(os.environ.get("IDLOCK_FACES_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "faces"))


@contextlib.asynccontextmanager
async def running_service(component: str, data_dir: Path, **env: str) -> AsyncIterator[grpc.aio.Channel]:
    """The service built exactly as `python -m services.<component>` builds it, with env overrides."""
    module = importlib.import_module(f"services.{component}.server")
    overrides = {"IDLOCK_DATA_DIR": str(data_dir), f"IDLOCK_{component.upper()}_PORT": "0", **env}
    with mock.patch.dict(os.environ, overrides):
        settings = module.SETTINGS()
        service = GrpcService(module.build(settings), settings)
        await service.start()
        try:
            async with grpc_client.channel(service.address, default_timeout_s=120) as channel:
                yield channel
        finally:
            await service.stop(drain_s=0)
