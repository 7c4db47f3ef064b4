"""Prompt cache: composed prompts keyed by (character, memory version, prompt hash, overrides hash, engine config).

Two implementations of the `PromptCache` protocol: in memory (tests, dev) and over a NATS KV bucket. Keys are
`<character token>.<sha256 of the rest>` so erasure can find every key of a character with the subject filter
`<character token>.>` (NATS KV keys: `[-/_=.a-zA-Z0-9]+`, no leading/trailing dot).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from .prompt import ComposedPrompt

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

    def __init__(self, kv: Any) -> None:
        self._kv = kv

    @classmethod
    async def open(
        cls, js: Any, bucket: str = "idlock_prompt_cache", *, ttl_s: int = 0, replicas: int = 1
    ) -> NatsKvPromptCache:
        from nats.js.errors import BucketNotFoundError

        try:
            kv = await js.key_value(bucket)
        except BucketNotFoundError:
            kw: dict[str, Any] = {
                "bucket": bucket,
                "history": 1,
                "replicas": replicas,
                "description": "IDLock composed-prompt cache",
            }
            if ttl_s:
                kw["ttl"] = float(ttl_s)
            kv = await js.create_key_value(**kw)
        return cls(kv)

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
        await self._kv.put(key.storage_key(), replace(value, cache_hit=False).to_json().encode())

    async def _keys_of(self, token: str) -> list[str]:
        watcher = await self._kv.watch(f"{token}.>", ignore_deletes=True, meta_only=True)
        keys: list[str] = []
        try:
            async with asyncio.timeout(30):
                async for entry in watcher:
                    if entry is None:  # the initial values have all been delivered
                        break
                    keys.append(entry.key)
        finally:
            await watcher.stop()
        return keys

    async def delete_for_character(self, character_id: str) -> int:
        keys = await self._keys_of(character_token(character_id))
        for k in keys:
            await self._kv.purge(k)
        return len(keys)


async def cache_from_settings(settings: Any, js: Any | None = None) -> PromptCache | None:
    """The cache `settings.cache_backend` names: a NATS KV bucket (needs `js`), in memory, or none."""
    backend = settings.cache_backend
    if backend == "none":
        return None
    if backend == "memory" or js is None:
        if backend == "nats":
            log.warning("prompt cache: no JetStream context given, using an in-memory cache")
        return InMemoryPromptCache()
    return await NatsKvPromptCache.open(js, settings.kv_bucket, ttl_s=settings.cache_ttl_s)
