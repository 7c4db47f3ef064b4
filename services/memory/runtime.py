"""What one memory process opens and closes, in one place: the database (versioned create_all), object storage,
Qdrant, the text embedder (loading while the stores open), the LLM client, NATS (events and the prompt cache's
KV bucket; without NATS, no events and an in-memory cache) and the identity client. Built once from the settings
at start-up; the service reports SERVING only after `open`. Also the work that outlives a call: events and cache
writes sent after answering, which shutdown lets finish."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from pathlib import Path

from google.protobuf.message import Message

from idlock.bus import EventBus
from idlock.db import Database
from idlock.settings import DatabaseSettings, MeshSettings, NatsSettings, PathsSettings, StorageSettings
from idlock.storage import ObjectStore, open_store
from services.memory.cache import PromptCache, WriteBehindCache, cache_from_settings
from services.memory.clients import IdentityClient
from services.memory.context import ContextConfig
from services.memory.llm import GroqLlm, LlmConfig
from services.memory.models import SCHEMA_VERSION, UPGRADES, Base
from services.memory.settings import MemorySettings
from services.memory.state import StateCache
from services.memory.text_embed import ScenePrompts, TextEmbedder, get_text_embedder
from services.memory.vectors import MemoryVectors

log = logging.getLogger("idlock.memory")


class MemoryRuntime:
    def __init__(self, settings: MemorySettings) -> None:
        self.settings = settings
        self.data_dir = Path(PathsSettings().data_dir)
        self.config = ContextConfig.from_settings(settings)
        self.llm = GroqLlm(LlmConfig.from_settings(settings))
        self.identity = IdentityClient(MeshSettings().identity_addr, settings.identity_timeout_s)
        self.db: Database | None = None
        self.store: ObjectStore | None = None
        self.vectors: MemoryVectors | None = None
        self.embedder: TextEmbedder | None = None
        self.cache: PromptCache | None = None
        self.bus: EventBus | None = None
        #: story states kept between context builds (episodes only append; a deleted character is forgotten)
        self.states = StateCache()
        #: each scene's prompt embedding, from its context to its record (one model run a scene, not two)
        self.scene_prompts = ScenePrompts()
        #: events and cache writes still on their way after the call that made them answered
        self.background: set[asyncio.Future[None]] = set()

    # --- lifecycle: opened in this order, closed in reverse ----------------------------------------------------

    async def open(self) -> None:
        s = self.settings
        # the text model loads while the stores are opened (its ONNX graph kept in the data dir for the next start)
        embedder = asyncio.ensure_future(
            asyncio.to_thread(get_text_embedder, s.text_embedder, self.data_dir / "models")
        )
        self.db = Database.open(
            DatabaseSettings(), service="memory", data_dir=self.data_dir, schema=s.db_schema or None
        )
        await self.db.migrate(Base.metadata, version=SCHEMA_VERSION, upgrades=UPGRADES)
        self.store = await open_store(StorageSettings(), self.data_dir)
        self.vectors = await MemoryVectors.open(s, self.data_dir)
        log.info("vector engine: %s", self.vectors.engine.where)
        self.bus = await EventBus.connect_optional(
            NatsSettings(),
            "memory",
            wait_s=s.nats_wait_s,
            without="events are not published and the prompt cache is in memory",
        )
        self.cache = WriteBehindCache(await cache_from_settings(s, self.bus), self.soon)
        self.embedder = await embedder

    async def close(self) -> None:
        if self.background:
            await asyncio.wait(list(self.background), timeout=5)
        for close in (
            self.identity.close,
            self.bus.close if self.bus else None,
            self.llm.aclose,
            self.vectors.close if self.vectors else None,
            self.store.close if self.store else None,
            self.db.close if self.db else None,
        ):
            if close is None:
                continue
            try:
                await close()
            except Exception:
                log.exception("memory shutdown step failed")

    # --- work after answering ---------------------------------------------------------------------------------

    def soon(self, work: Awaitable[None]) -> None:
        """Work the caller need not wait for (an event, a cache write); shutdown lets it finish."""
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def drain(self) -> None:
        """Wait for the work still on its way (before an erasure, so nothing lands after it)."""
        if self.background:
            await asyncio.wait(list(self.background))

    async def publish(self, subject: str, message: Message, msg_id: str) -> None:
        """Events are facts about committed state; a failed publish is logged, not turned into an RPC error."""
        if self.bus is None:
            return
        try:
            await self.bus.publish(subject, message, msg_id=msg_id)
        except Exception as e:  # noqa: BLE001
            log.warning("publishing %s (%s) failed: %s", subject, msg_id, e)


__all__ = ["MemoryRuntime"]
