"""A bounded in-memory cache whose entries also have a max age: each is dropped `max_age_s` after it was put,
whether it is used or not.

For what a service keeps of a character without knowing which character it belongs to (face prints and reference
photos by image hash, a render held for a retry by output): an erasure cannot find those entries, so their age
bounds how long they outlive it. `start` runs the expiry every quarter of the max age (at most every minute);
`get` never answers an entry past its age. Thread-safe: the refiner fills its cache from model threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
#: what `get` answers by default for a key it does not hold (a value may itself be None: a photo with no face)
MISSING: Any = object()
FULL, EXPIRED = "full", "expired"


class AgedCache(Generic[K, V]):
    """At most `size` entries, the least recently used dropped first; each kept at most `max_age_s` after `put`.
    `on_drop(key, FULL | EXPIRED)` is told of each entry dropped before it was popped."""

    def __init__(
        self,
        size: int,
        max_age_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_drop: Callable[[K, str], None] | None = None,
    ) -> None:
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be > 0 (got {max_age_s})")
        self.size = size
        self.max_age_s = max_age_s
        self._clock = clock
        self._on_drop = on_drop
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()  # key -> (when put, value)
        self._lock = threading.Lock()
        self._expiry: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, default: Any = MISSING) -> V | Any:
        """The value, or `default` when it was never put, was pushed out, or is older than `max_age_s`."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return default
            if self._clock() - hit[0] >= self.max_age_s:
                self._drop(key, EXPIRED)
                return default
            self._entries.move_to_end(key)
            return hit[1]

    def put(self, key: K, value: V) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._drop(next(iter(self._entries)), FULL)

    def pop(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def expire(self) -> int:
        """Drop every entry older than `max_age_s`; how many were dropped."""
        with self._lock:
            oldest = self._clock() - self.max_age_s
            old = [key for key, (made, _) in self._entries.items() if made <= oldest]
            for key in old:
                self._drop(key, EXPIRED)
        return len(old)

    def start(self) -> None:
        """Run `expire` every quarter of `max_age_s` (at most a minute) until `close`: an entry nobody asks for
        outlives its age by at most that."""
        self._expiry = asyncio.create_task(self._expire_every(), name="aged-cache-expiry")

    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
            self._expiry = None

    async def _expire_every(self) -> None:
        interval = min(max(self.max_age_s / 4, 0.01), 60.0)
        while True:
            await asyncio.sleep(interval)
            self.expire()

    def _drop(self, key: K, why: str) -> None:
        del self._entries[key]
        if self._on_drop is not None:
            self._on_drop(key, why)


__all__ = ["EXPIRED", "FULL", "MISSING", "AgedCache"]
