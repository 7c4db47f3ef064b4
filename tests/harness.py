"""Start a real service (its own `build()`) on port 0 inside the test's event loop."""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import grpc

from idlock import grpc_client
from idlock.grpc_server import GrpcService

FACES_DIR = Path(
    os.environ.get("IDLOCK_FACES_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "faces")
)


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


@dataclass
class Running:
    """A started service: its channel, its address (to hand to peers) and the server itself."""

    channel: grpc.aio.Channel
    address: str
    service: GrpcService


@contextlib.asynccontextmanager
async def serving(component: str, data_dir: Path, **env: str) -> AsyncIterator[Running]:
    """Like `running_service`, but the env overrides apply only while the service starts (its settings and
    start-up read them), so several services with different overrides can run side by side (e.g. identity and
    memory with `IDLOCK_IDENTITY_ADDR`); yields the address as well as a channel."""
    module = importlib.import_module(f"services.{component}.server")
    overrides = {"IDLOCK_DATA_DIR": str(data_dir), f"IDLOCK_{component.upper()}_PORT": "0", **env}
    with mock.patch.dict(os.environ, overrides):
        settings = module.SETTINGS()
        service = GrpcService(module.build(settings), settings)
        await service.start()
    try:
        async with grpc_client.channel(service.address, default_timeout_s=120) as channel:
            yield Running(channel, service.address, service)
    finally:
        await service.stop(drain_s=0)


@contextlib.asynccontextmanager
async def started_service(
    component: str, data_dir: Path, *, spec=None, settings=None, **env: str
) -> AsyncIterator[tuple[GrpcService, grpc.aio.Channel]]:
    """Like `running_service`, but yields the running `GrpcService` too (its `.address` for peers). `spec` and
    `settings` replace what `build(SETTINGS())` would make (a test that needs a handle on the servicer)."""
    module = importlib.import_module(f"services.{component}.server")
    overrides = {"IDLOCK_DATA_DIR": str(data_dir), f"IDLOCK_{component.upper()}_PORT": "0", **env}
    with mock.patch.dict(os.environ, overrides):
        settings = settings if settings is not None else module.SETTINGS()
        service = GrpcService(spec if spec is not None else module.build(settings), settings)
        await service.start()
        try:
            async with grpc_client.channel(service.address, default_timeout_s=120) as channel:
                yield service, channel
        finally:
            await service.stop(drain_s=0)


@contextlib.asynccontextmanager
async def running_services(
    data_dir: Path,
    components: list[str],
    env: dict[str, str] | None = None,
    per_service_env: dict[str, dict[str, str]] | None = None,
) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    """Several real services in one test, started in the given order; each later one finds the earlier ones
    through IDLOCK_<NAME>_ADDR (also left set for the test body). Yields name -> channel."""
    env = dict(env or {})
    per_service_env = per_service_env or {}
    channels: dict[str, grpc.aio.Channel] = {}
    async with contextlib.AsyncExitStack() as stack:
        for name in components:
            service, channel = await stack.enter_async_context(
                started_service(name, data_dir, **env, **per_service_env.get(name, {}))
            )
            env[f"IDLOCK_{name.upper()}_ADDR"] = service.address
            channels[name] = channel
        stack.enter_context(
            mock.patch.dict(os.environ, {k: v for k, v in env.items() if k.endswith("_ADDR")})
        )
        yield channels


async def stream_events(
    nats_url: str, subject: str, *, want: int = 1, match=None, timeout_s: float = 10.0
) -> list:
    """Decoded messages on `subject` in its stream, from the first, until `want` of them pass `match` (or the
    time is up)."""
    import asyncio

    import nats

    from idlock.bus import decode

    nc = await nats.connect(nats_url)
    found: list = []
    try:
        sub = await nc.jetstream().subscribe(subject, ordered_consumer=True)
        try:
            async with asyncio.timeout(timeout_s):
                while len(found) < want:
                    event = decode(await sub.next_msg(timeout=timeout_s))
                    if match is None or match(event):
                        found.append(event)
        except TimeoutError:
            pass
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()
    return found


@contextlib.contextmanager
def small_disk(path: Path, size_mb: int = 16):
    """A real filesystem of `size_mb` at `path` (tmpfs) that a test can fill up or make read-only; skips the test
    where this machine does not let it mount one (mounting needs root)."""
    import subprocess

    import pytest

    path.mkdir(parents=True, exist_ok=True)
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
        check=False,
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs for a full-disk fault here: {made.stderr.strip() or 'no mount'}"
        )
    try:
        yield Disk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@dataclass
class Disk:
    """A mounted small filesystem: fill it to the last byte, free it, make it read-only and writable again."""

    path: Path

    def fill(self) -> None:
        fd = os.open(self.path / "ballast", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for size in (1 << 20, 4096, 1):  # to the last byte
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)

    def free(self) -> None:
        (self.path / "ballast").unlink(missing_ok=True)

    def read_only(self, on: bool) -> None:
        import subprocess

        subprocess.run(["mount", "-o", f"remount,{'ro' if on else 'rw'}", str(self.path)], check=True)
