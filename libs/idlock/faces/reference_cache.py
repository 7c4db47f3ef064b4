"""What a service computed from reference photos (face prints, detected faces), kept in memory by the image's hash so
a character's references are not read and measured again for every scene.

An entry is biometric data of the character. Nothing here knows which character an image belonged to, so an
erasure cannot find its entries: instead each entry is dropped `max_age_s` after it was computed, whether it is
used or not (`expire`, run every quarter of that by `expire_every`), and a later use computes it again from the
stored photo (which an erasure deleted). Thread-safe: the refiner fills it from its model threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger("idlock.faces.reference_cache")

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
#: what `get` answers for a key it does not hold (a value may itself be None: a photo with no face)
MISSING = object()


class ReferenceCache(Generic[K, V]):
    """At most `size` entries, the least recently used dropped first; each kept at most `max_age_s` after `put`."""

    def __init__(self, size: int, max_age_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if max_age_s <= 0:
            raise ValueError(f"max_age_s must be > 0 (got {max_age_s})")
        self.size = size
        self.max_age_s = max_age_s
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()  # key -> (when computed, value)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | object:
        """The value, or `MISSING` when it was never put, was pushed out, or is older than `max_age_s`."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return MISSING
            if self._clock() - hit[0] >= self.max_age_s:
                del self._entries[key]
                return MISSING
            self._entries.move_to_end(key)
            return hit[1]

    def put(self, key: K, value: V) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def expire(self) -> int:
        """Drop every entry older than `max_age_s`; how many were dropped."""
        with self._lock:
            oldest = self._clock() - self.max_age_s
            old = [key for key, (made, _) in self._entries.items() if made <= oldest]
            for key in old:
                del self._entries[key]
        return len(old)

    async def expire_every(self) -> None:
        """`expire` every quarter of `max_age_s` (at most a minute) until cancelled: an entry outlives its age by
        at most that."""
        interval = min(max(self.max_age_s / 4, 0.01), 60.0)
        while True:
            await asyncio.sleep(interval)
            dropped = self.expire()
            if dropped:
                log.debug("%d reference entries expired", dropped)


__all__ = ["MISSING", "ReferenceCache"]
