"""In-memory token buckets, one per key (user id, client IP), with Retry-After for refused requests.

A bucket holds up to `burst` tokens and refills at `per_minute / 60` tokens a second; each request takes one.
Buckets that have been full for a while carry no information and are dropped, so memory stays bounded.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import ApiError


@dataclass(frozen=True)
class Decision:
    allowed: bool
    remaining: int
    #: seconds until the next token (0 when allowed)
    retry_after_s: float

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))


class TokenBucketLimiter:
    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, last update)
        self._lock = threading.Lock()

    def hit(self, key: str, cost: float = 1.0) -> Decision:
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - last) * self.rate)
            if tokens >= cost:
                tokens -= cost
                decision = Decision(True, int(tokens), 0.0)
            else:
                decision = Decision(False, 0, (cost - tokens) / self.rate)
            self._buckets[key] = (tokens, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return decision

    def check(self, key: str, what: str = "requests") -> Decision:
        """Take a token or raise 429 with Retry-After."""
        decision = self.hit(key)
        if not decision.allowed:
            raise ApiError(
                429,
                "rate_limited",
                f"too many {what}: limit is {self.rate * 60:g} per minute (bursts of {self.burst:g}); "
                f"retry after {decision.retry_after_header} s",
                headers={"Retry-After": decision.retry_after_header},
            )
        return decision

    def __len__(self) -> int:
        return len(self._buckets)
