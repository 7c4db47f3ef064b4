"""Where the identity service's model work runs. dlib's descriptor holds the GIL for ~70 ms a face: on threads of the
service's own process it freezes the event loop (health probes, every other RPC) for each face. With
`isolation=process` (the default) the models live in worker processes, and the service's loop only sends the image
bytes and receives the results; `isolation=thread` keeps them in-process (one model copy less in memory, and the
stalls back).

Each worker holds one engine (`idlock.faces.engine`) and the protected gallery, loaded once when it starts; a call
names an engine method (`ENGINE_CALLS`) or one of this module's own (`gallery_check`, `detect`). Calls that arrive
together queue in the pool and go to the next free worker.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from idlock.faces.engine import IdentityEngine, get_engine
from idlock.threads import limit_cpu_threads, lower_this_thread, model_executor
from services.identity.protected import ProtectedGallery
from services.identity.settings import IdentitySettings

log = logging.getLogger("idlock.identity.workers")

PR_SET_PDEATHSIG = 1
#: the engine's methods a call may name
ENGINE_CALLS = frozenset(
    {"encode_references", "reference_prints", "score_identity", "compare_images", "detect_faces"}
)


@dataclass(frozen=True)
class EngineInfo:
    encoder: str
    dim: int
    protected_faces: int
    #: the process that answered
    pid: int


class _Worker:
    """The models of one process (a worker, or the service's own with isolation=thread)."""

    engine: IdentityEngine | None = None
    gallery: ProtectedGallery = ProtectedGallery([])


def _die_with(parent: int) -> None:
    """A worker ends when the service does, even when it is killed (SIGKILL leaves no time to stop its pool):
    Linux's parent-death signal, then a check that the parent did not go before it was set."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError) as e:  # not Linux: the pool's own shutdown is all there is
        log.info("identity workers will not follow a killed service: %s", e)
    if os.getppid() != parent:
        os._exit(0)


def _start(settings_json: str, in_process: bool, parent: int = 0) -> None:
    settings = IdentitySettings.model_validate_json(settings_json)
    if not in_process:
        _die_with(parent)
        # one worker, one core's worth of BLAS/OpenMP threads: the pool is the parallelism
        limit_cpu_threads(1)
        lower_this_thread(settings.model_thread_priority)
    _Worker.engine = get_engine(settings)
    _Worker.gallery = ProtectedGallery.load(_Worker.engine, settings.protected_gallery_dir)


def _call(method: str, args: tuple) -> Any:
    engine = _Worker.engine
    assert engine is not None, "the models are not loaded"
    if method == "info":
        return EngineInfo(engine.encoder.name, engine.encoder.dim, len(_Worker.gallery), os.getpid())
    if method == "gallery_check":
        return _Worker.gallery.check(engine, *args)
    if method == "detect":  # faces and the decoded size, from one decode
        rgb = engine.pixels(args[0])
        return engine.detect_faces(rgb), rgb.shape[1], rgb.shape[0]
    if method not in ENGINE_CALLS:
        raise ValueError(f"not an identity model call: {method}")
    return getattr(engine, method)(*args)


class IdentityModels:
    """The engine behind `run(method, *args)`, in worker processes or on threads."""

    def __init__(self, settings: IdentitySettings) -> None:
        self.settings = settings
        self.isolation = settings.isolation
        self._pool: Executor | None = None
        self.info: EngineInfo | None = None

    async def start(self) -> EngineInfo:
        s = self.settings
        loop = asyncio.get_running_loop()
        if self.isolation == "process":
            self._pool = ProcessPoolExecutor(
                s.workers,
                # spawn: a fork of a process running gRPC's threads is not safe
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start,
                initargs=(s.model_dump_json(), False, os.getpid()),
            )
            # every worker loads its models before the service reports SERVING
            infos = await asyncio.gather(*(self._submit("info") for _ in range(s.workers)))
            self.info = infos[0]
        else:
            self._pool = model_executor(s.workers, "identity", s.model_thread_priority)
            await loop.run_in_executor(self._pool, _start, s.model_dump_json(), True)
            self.info = await self._submit("info")
        log.info(
            "identity models: %s (%d-d) in %d %s(es), %d protected faces",
            self.info.encoder,
            self.info.dim,
            s.workers,
            self.isolation,
            self.info.protected_faces,
        )
        return self.info

    def _submit(self, method: str, *args: Any) -> asyncio.Future:
        assert self._pool is not None, "IdentityModels.start() was not awaited"
        return asyncio.get_running_loop().run_in_executor(self._pool, _call, method, args)

    async def run(self, method: str, *args: Any) -> Any:
        return await self._submit(method, *args)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


__all__ = ["ENGINE_CALLS", "EngineInfo", "IdentityModels"]
