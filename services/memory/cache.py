"""Prompt cache: composed prompts keyed by (character, memory version, prompt hash, overrides hash, engine config).

Two implementations of the `PromptCache` protocol: in memory (tests, dev) and over a NATS KV bucket. Keys are
`<character token>.<sha256 of the rest>` so erasure can find every key of a character with the subject filter
`<character token>.>` (NATS KV keys: `[-/_=.a-zA-Z0-9]+`, no leading/trailing dot).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .prompt import ComposedPrompt

if TYPE_CHECKING:
    from idlock.bus import EventBus

log = logging.getLogger(__name__)
_TOKEN_RE = re.compile(r"^[-_=A-Za-z0-9]{1,64}$")


def character_token(character_id: str) -> str:
    """The character id when it is a valid single KV token, else a stable hash of it."""
    if _TOKEN_RE.match(character_id):
        return character_id
    return "h" + hashlib.sha256(character_id.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class CacheKey:
    character_id: str
    memory_version: int
    prompt_hash: str  # sha256 of the composed template (covers user prompt, sheet, state, scenes)
    overrides_hash: str
    engine: str  # LlmConfig.engine_key()

    def storage_key(self) -> str:
        rest = f"{self.memory_version}\x1f{self.prompt_hash}\x1f{self.overrides_hash}\x1f{self.engine}"
        return f"{character_token(self.character_id)}.{hashlib.sha256(rest.encode()).hexdigest()}"


@runtime_checkable
class PromptCache(Protocol):
    async def get(self, key: CacheKey) -> ComposedPrompt | None: ...

    async def put(self, key: CacheKey, value: ComposedPrompt) -> None: ...

    async def delete_for_character(self, character_id: str) -> int:
        """Remove every entry of the character; returns how many were removed."""
        ...


class WriteBehindCache:
    """A cache whose writes are handed to `schedule` instead of awaited: a context build answers without waiting
    for the store. A read just after may miss (the prompt is composed again); erasure must first wait for the
    writes still scheduled."""

    def __init__(self, cache: PromptCache, schedule: Callable[[Awaitable[None]], None]) -> None:
        self.cache = cache
        self._schedule = schedule

    async def get(self, key: CacheKey) -> ComposedPrompt | None:
        return await self.cache.get(key)

    async def put(self, key: CacheKey, value: ComposedPrompt) -> None:
        async def write() -> None:
            try:
                await self.cache.put(key, value)
            except Exception as e:  # noqa: BLE001 - a lost cache write costs one recomposition
                log.warning("prompt cache write %s failed: %s", key.storage_key(), e)

        self._schedule(write())

    async def delete_for_character(self, character_id: str) -> int:
        return await self.cache.delete_for_character(character_id)


class InMemoryPromptCache:
    def __init__(self, max_entries: int = 10_000) -> None:
        self._d: dict[str, str] = {}
        self._max = max_entries
        self._lock = asyncio.Lock()

    async def get(self, key: CacheKey) -> ComposedPrompt | None:
        raw = self._d.get(key.storage_key())
        return replace(ComposedPrompt.from_json(raw), cache_hit=True) if raw is not None else None

    async def put(self, key: CacheKey, value: ComposedPrompt) -> None:
        async with self._lock:
            if len(self._d) >= self._max:
                self._d.pop(next(iter(self._d)))
            self._d[key.storage_key()] = replace(value, cache_hit=False).to_json()

    async def delete_for_character(self, character_id: str) -> int:
        prefix = character_token(character_id) + "."
        async with self._lock:
            keys = [k for k in self._d if k.startswith(prefix)]
            for k in keys:
                del self._d[k]
        return len(keys)

    def __len__(self) -> int:
        return len(self._d)


class NatsKvPromptCache:
    """Over a JetStream KV bucket. Build with `await NatsKvPromptCache.open(js, bucket)`."""

    def __init__(self, kv: Any, js: Any, stream: str) -> None:
        self._kv = kv
        self._js = js
        self._stream = stream  # the bucket's stream, where erasure deletes messages

    @classmethod
    async def open(
        cls,
        js: Any,
        bucket: str = "idlock_prompt_cache",
        *,
        ttl_s: int = 0,
        replicas: int = 1,
        setup: Any | None = None,
    ) -> NatsKvPromptCache:
        """Open the bucket, creating its stream as a KV bucket's, except that messages may be deleted: erasure
        deletes them (the server overwrites their bytes). A bucket made by an earlier release denies that, and
        a stream cannot be changed to allow it: being a cache, it is made again (its prompts are composed again).
        `setup`: the JetStream context for creating the bucket (a longer timeout than `js`, which serves it)."""
        from nats.js import api
        from nats.js.errors import NotFoundError

        stream = f"KV_{bucket}"
        admin = setup or js
        try:
            info = await admin.stream_info(stream)
        except NotFoundError:
            info = None
        if info is not None and info.config.deny_delete:
            log.warning(
                "prompt cache bucket %s was made without message deletes, so erasure could not reach its "
                "files: making it again (cached prompts are composed again)",
                bucket,
            )
            await admin.delete_stream(stream)
            info = None
        if info is None:
            await admin.add_stream(
                api.StreamConfig(
                    name=stream,
                    description="IDLock composed-prompt cache",
                    subjects=[f"$KV.{bucket}.>"],
                    allow_direct=True,
                    allow_rollup_hdrs=True,
                    deny_delete=False,
                    discard=api.DiscardPolicy.NEW,
                    duplicate_window=min(float(ttl_s), 120.0) if ttl_s else 120.0,
                    max_age=float(ttl_s) if ttl_s else None,
                    max_consumers=-1,
                    max_msgs=-1,
                    max_msgs_per_subject=1,
                    num_replicas=replicas,
                    storage=api.StorageType.FILE,
                )
            )
        return cls(await js.key_value(bucket), js, stream)

    async def get(self, key: CacheKey) -> ComposedPrompt | None:
        from nats.js.errors import NotFoundError

        try:
            entry = await self._kv.get(key.storage_key())
        except NotFoundError:  # missing, deleted or purged
            return None
        if not entry.value:
            return None
        try:
            return replace(ComposedPrompt.from_json(entry.value), cache_hit=True)
        except (ValueError, TypeError):
            log.warning("unreadable prompt cache entry %s ignored", key.storage_key())
            return None

    async def put(self, key: CacheKey, value: ComposedPrompt) -> None:
        """Create only: an overwritten revision would be dropped from the stream's files without being erased,
        where a later erasure could not reach it (a key's value is the same prompt anyway)."""
        from nats.js.errors import KeyWrongLastSequenceError

        try:
            await self._kv.create(key.storage_key(), replace(value, cache_hit=False).to_json().encode())
        except KeyWrongLastSequenceError:
            pass  # already cached

    async def _entries_of(self, token: str) -> list[tuple[str, int]]:
        """(key, stream sequence) of each live entry of the character."""
        watcher = await self._kv.watch(f"{token}.>", ignore_deletes=True, meta_only=True)
        entries: list[tuple[str, int]] = []
        try:
            async with asyncio.timeout(30):
                async for entry in watcher:
                    if entry is None:  # the initial values have all been delivered
                        break
                    entries.append((entry.key, entry.revision))
        finally:
            await watcher.stop()
        return entries

    async def delete_for_character(self, character_id: str) -> int:
        """Erase each entry's message (the server overwrites its bytes in the stream's files; a purge alone
        leaves them there until the block is compacted), then purge the key."""
        from nats.js.errors import NotFoundError

        entries = await self._entries_of(character_token(character_id))
        for key, seq in entries:
            with contextlib.suppress(NotFoundError):  # expired or erased meanwhile
                await self._js.delete_msg(self._stream, seq)
            await self._kv.purge(key)
        return len(entries)


async def cache_from_settings(settings: Any, bus: EventBus | None = None) -> PromptCache | None:
    """The cache `settings.cache_backend` names: a NATS KV bucket (needs `bus`), in memory, or none."""
    backend = settings.cache_backend
    if backend == "none":
        return None
    if backend == "memory" or bus is None:
        if backend == "nats":
            log.warning("prompt cache: no NATS connection, using an in-memory cache")
        return InMemoryPromptCache()
    return await NatsKvPromptCache.open(
        bus.js, settings.kv_bucket, ttl_s=settings.cache_ttl_s, setup=bus.js_setup
    )
