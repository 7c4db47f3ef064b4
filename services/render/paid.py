"""Paid renders happen at most once per output: a call to a paid provider is counted in object storage *before* it
is made (`{prefix}/paid_calls.json`), so a render service that died mid-call is seen to repeat it (the job's
metrics say so, and its cost counts both); and a rendered image whose saving failed is held here and saved by the
retry, never rendered again. No gRPC here."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from idlock.errors import NotFound, StorageUnavailable
from idlock.retry import RetryPolicy
from idlock.storage import ObjectStore

log = logging.getLogger("idlock.render.paid")

T = TypeVar("T")
K = TypeVar("K")

PAID_CALLS = "paid_calls.json"


async def count_paid_call(store: ObjectStore, prefix: str) -> int:
    """Record one more paid call for the output under `prefix` and return how many there were. Raises the
    storage error when it cannot be recorded: then the call is not made either."""
    key = f"{prefix}/{PAID_CALLS}"
    try:
        calls = int(json.loads(await store.get(key)).get("calls", 0))
    except NotFound:
        calls = 0
    calls += 1
    await store.put(key, json.dumps({"calls": calls}).encode(), "application/json")
    return calls


class Held(Generic[K, T]):
    """Rendered results not yet saved (object storage failed), by output; the oldest go past `limit`, and none is
    kept past `max_age_s` from when it was rendered: no job waits for it that long (a job's deadline), and an image
    of a character erased meanwhile, whose job will never ask again, does not stay in memory."""

    def __init__(
        self, limit: int = 64, max_age_s: float = 3600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.max_age_s = max_age_s
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, T]] = OrderedDict()  # key -> (when rendered, result)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: K) -> T | None:
        item = self._items.get(key)
        if item is None:
            return None
        if self._clock() - item[0] >= self.max_age_s:
            self._drop(key)
            return None
        return item[1]

    def hold(self, key: K, value: T) -> None:
        self._items[key] = (self._clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            dropped, _ = self._items.popitem(last=False)
            log.warning(
                "dropped an unsaved render of %s: more than %d are waiting for storage", dropped, self.limit
            )

    def release(self, key: K) -> None:
        self._items.pop(key, None)

    def expire(self) -> int:
        """Drop every result held past `max_age_s`; how many were dropped."""
        oldest = self._clock() - self.max_age_s
        old = [key for key, (made, _) in self._items.items() if made <= oldest]
        for key in old:
            self._drop(key)
        return len(old)

    async def expire_every(self) -> None:
        """`expire` every quarter of `max_age_s` (at most a minute) until cancelled."""
        while True:
            await asyncio.sleep(min(max(self.max_age_s / 4, 0.01), 60.0))
            self.expire()

    def _drop(self, key: K) -> None:
        self._items.pop(key, None)
        log.warning("dropped an unsaved render of %s: held %.0f s, past its max age", key, self.max_age_s)


#: how a save is tried again inside one call (0.5 s, then 1 s) before the storage error goes to the caller
SAVE_RETRY = RetryPolicy(initial_s=0.5, jitter=0.0)


async def saving(fn: Callable[[], Awaitable[T]], *, tries: int = 3) -> T:
    """`fn` (a save), tried again after a storage error before the error is raised."""
    for retry in range(1, tries):
        try:
            return await fn()
        except StorageUnavailable as e:
            delay = SAVE_RETRY.delay(retry)
            log.warning("saving failed (%s); trying again in %.1f s", e.message, delay)
            await asyncio.sleep(delay)
    return await fn()


__all__ = ["PAID_CALLS", "SAVE_RETRY", "Held", "count_paid_call", "saving"]
