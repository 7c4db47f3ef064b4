"""Where the identity service's model work runs. dlib's descriptor holds the GIL for ~70 ms a face: on threads of the
service's own process it freezes the event loop (health probes, every other RPC) for each face. With
`isolation=process` (the default) the models live in worker processes, and the service's loop only sends the image
bytes and receives the results; `isolation=thread` keeps them in-process (one model copy less in memory, and the
stalls back).

Each worker holds one engine (`idlock.faces.engine`) and the protected gallery, loaded once when it starts; a call
names an engine method (`ENGINE_CALLS`) or one of this module's own (`gallery_check`, `detect`). Scene scorings
that arrive while every worker is busy wait in the service and go to the next free worker as one batch
(`SceneBatcher`, one embedding pass over all their faces); other calls queue in the pool.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from idlock import metrics
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
#: calls batched when they arrive together: the engine method that takes a list of them
BATCHED = {"score_identity": "score_identity_many"}


@dataclass(frozen=True)
class EngineInfo:
    encoder: str
    dim: int
    protected_faces: int
    #: the process that answered
    pid: int
    #: where the models compute (`FaceEncoder.runs_on`)
    runs_on: str = "CPU"


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
        encoder = engine.encoder
        return EngineInfo(encoder.name, encoder.dim, len(_Worker.gallery), os.getpid(), encoder.runs_on)
    if method == "gallery_check":
        return _Worker.gallery.check(engine, *args)
    if method == "detect":  # faces and the decoded size, from one decode
        rgb = engine.pixels(args[0])
        return engine.detect_faces(rgb), rgb.shape[1], rgb.shape[0]
    if method in BATCHED.values():
        return getattr(engine, method)(*args)
    if method not in ENGINE_CALLS:
        raise ValueError(f"not an identity model call: {method}")
    return getattr(engine, method)(*args)


class SceneBatcher:
    """Calls of one batched method: sent at once while a worker is free, else held until one is, and then sent
    together (split evenly over the workers that are free, at most `batch_max` a batch). A lone caller never
    waits for company."""

    def __init__(
        self, submit: Callable[..., asyncio.Future], method: str, slots: int, batch_max: int
    ) -> None:
        self._submit = submit
        self._method = BATCHED[method]
        self._slots = slots
        self._batch_max = batch_max
        self._pending: deque[tuple[tuple, asyncio.Future]] = deque()
        self._busy = 0
        #: sizes of the batches sent, newest last
        self.sizes: deque[int] = deque(maxlen=1024)

    async def run(self, args: tuple) -> Any:
        answer = asyncio.get_running_loop().create_future()
        self._pending.append((args, answer))
        self._dispatch()
        return await answer

    def _dispatch(self) -> None:
        while self._pending and self._busy < self._slots:
            free = self._slots - self._busy
            size = min(self._batch_max, -(-len(self._pending) // free))
            batch = [self._pending.popleft() for _ in range(size)]
            batch = [(args, answer) for args, answer in batch if not answer.done()]  # a caller gone
            if not batch:
                continue
            try:
                sent = self._submit(self._method, [args for args, _ in batch])
            except Exception as e:  # noqa: BLE001 - a pool shut down: its callers hear why
                for _, answer in batch:
                    answer.set_exception(e)
                continue
            self._busy += 1
            self.sizes.append(len(batch))
            metrics.IDENTITY_BATCH.observe(len(batch))
            sent.add_done_callback(lambda done, batch=batch: self._answer(done, batch))

    def _answer(self, done: asyncio.Future, batch: list[tuple[tuple, asyncio.Future]]) -> None:
        self._busy -= 1
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        outcomes = done.result() if error is None else [None] * len(batch)
        for (_, answer), outcome in zip(batch, outcomes, strict=True):
            if answer.done():
                continue
            if error is not None:
                answer.set_exception(error)
            elif outcome.error is not None:
                answer.set_exception(outcome.error)
            else:
                answer.set_result(outcome.value)
        self._dispatch()


class IdentityModels:
    """The engine behind `run(method, *args)`, in worker processes or on threads."""

    def __init__(self, settings: IdentitySettings) -> None:
        self.settings = settings
        self.isolation = settings.isolation
        self._pool: Executor | None = None
        self.info: EngineInfo | None = None
        self.batchers = {
            method: SceneBatcher(self._submit, method, settings.workers, settings.batch_max)
            for method in BATCHED
        }

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
            "identity models: %s (%d-d) on %s in %d %s(es), %d protected faces",
            self.info.encoder,
            self.info.dim,
            self.info.runs_on,
            s.workers,
            self.isolation,
            self.info.protected_faces,
        )
        return self.info

    def _submit(self, method: str, *args: Any) -> asyncio.Future:
        assert self._pool is not None, "IdentityModels.start() was not awaited"
        return asyncio.get_running_loop().run_in_executor(self._pool, _call, method, args)

    async def run(self, method: str, *args: Any) -> Any:
        batcher = self.batchers.get(method)
        if batcher is not None and self.settings.batch_max > 1:
            return await batcher.run(args)
        return await self._submit(method, *args)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


__all__ = ["BATCHED", "ENGINE_CALLS", "EngineInfo", "IdentityModels", "SceneBatcher"]
