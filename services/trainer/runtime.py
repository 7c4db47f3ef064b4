"""What one trainer process opens and closes, in one place: its database, object store, bus (optional: without
NATS there is no golden collection and no training job), thread pools, peers and background tasks. Built once
from the settings at start-up; nothing below it reads the environment."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from idlock.bus import EventBus
from idlock.db import Database
from idlock.faces.settings import FaceSettings
from idlock.settings import DatabaseSettings, MeshSettings, NatsSettings, PathsSettings, StorageSettings
from idlock.storage import ObjectStore, open_store
from idlock.v1 import events_pb2
from services.trainer import models as m
from services.trainer.clients import MemoryClient
from services.trainer.registry import TrainerRepository
from services.trainer.settings import TrainerSettings
from services.trainer.views import STATUS

log = logging.getLogger("idlock.trainer")


class TrainerRuntime:
    def __init__(self, settings: TrainerSettings) -> None:
        self.settings = settings
        self.data_dir = Path(PathsSettings().data_dir)
        self.faces = FaceSettings()
        self.mesh = MeshSettings()
        self.db: Database | None = None
        self.repo: TrainerRepository | None = None
        self.store: ObjectStore | None = None
        self.bus: EventBus | None = None
        self.memory = MemoryClient(self.mesh)
        #: training and validation: one model job at a time
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainer")
        #: dataset builds and face detection, so they never wait behind a training run
        self.light = ThreadPoolExecutor(max_workers=2, thread_name_prefix="trainer-data")
        self._tasks: set[asyncio.Task] = set()

    # --- lifecycle: opened in this order, closed in reverse ----------------------------------------------------

    async def open(self) -> None:
        self.db = Database.open(DatabaseSettings(), service="trainer", data_dir=self.data_dir)
        await self.db.migrate(m.Base.metadata, version=m.SCHEMA_VERSION, upgrades=m.UPGRADES)
        self.repo = TrainerRepository(self.db)
        self.store = await open_store(StorageSettings(), self.data_dir)
        self.bus = await EventBus.connect_optional(
            NatsSettings(),
            "trainer",
            wait_s=self.settings.nats_wait_s,
            without="no golden collection, no training jobs, no events",
        )

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for close in (
            self.bus.close if self.bus else None,
            self.memory.close,
            self.store.close if self.store else None,
            self.db.close if self.db else None,
        ):
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.exception("trainer shutdown step failed")
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.light.shutdown(wait=False, cancel_futures=True)

    # --- helpers ----------------------------------------------------------------------------------------------

    async def run(self, fn, *args, pool: ThreadPoolExecutor | None = None, **kwargs):
        """Run blocking model or file work on a pool (the training pool unless told)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool or self.pool, lambda: fn(*args, **kwargs))

    def background(self, make: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        """A task that shutdown cancels."""
        task = asyncio.create_task(make(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def publish(self, subject: str, message, msg_id: str | None = None) -> None:
        if self.bus is None:
            return
        try:
            await self.bus.publish(subject, message, msg_id=msg_id)
        except Exception as e:  # noqa: BLE001 - events are best effort; the rows are the truth
            log.warning("publishing %s failed: %s", subject, e)

    async def lora_event(
        self, subject: str, row: m.LoraModel, run_id: str = "", msg_id: str | None = None
    ) -> None:
        ev = events_pb2.LoraEvent(
            lora_id=row.id, character_id=row.character_id, status=STATUS.get(row.status, 0), run_id=run_id
        )
        ev.at.GetCurrentTime()
        await self.publish(subject, ev, msg_id)

    def lora_cache_path(self, row: m.LoraModel) -> Path:
        return self.data_dir / "trainer" / "cache" / f"{row.file_sha256 or row.id}.safetensors"

    def run_dir(self, run_id: str) -> Path:
        return self.data_dir / "trainer" / "runs" / run_id


__all__ = ["TrainerRuntime"]
