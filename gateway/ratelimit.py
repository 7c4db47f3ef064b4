"""Token buckets, one per key (user id, client IP), with Retry-After for refused requests: in the gateway's
database, so that every replica takes from the same bucket (`SharedLimiter`, the default), or in this process
(`TokenBucketLimiter`, IDLOCK_GATEWAY_RATE_LIMIT_STORE=process).

A bucket holds up to `burst` tokens and refills at `per_minute / 60` tokens a second; each request takes one.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

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
        return refuse_unless_allowed(self.hit(key), self, what)

    def __len__(self) -> int:
        return len(self._buckets)


def refuse_unless_allowed(decision: Decision, limiter, what: str) -> Decision:
    if not decision.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"too many {what}: limit is {limiter.rate * 60:g} per minute (bursts of {limiter.burst:g}); "
            f"retry after {decision.retry_after_header} s",
            headers={"Retry-After": decision.retry_after_header},
        )
    return decision


async def take(limiter, key: str, what: str = "requests") -> Decision:
    """A token from either kind of limiter, or 429 with Retry-After."""
    decision = limiter.hit(key)
    if not isinstance(decision, Decision):
        decision = await decision
    return refuse_unless_allowed(decision, limiter, what)


class SharedLimiter:
    """Token buckets in the gateway's database, so that every replica takes from the same bucket: one atomic UPDATE
    per request takes a token when there is one (the refill is computed in the statement), an INSERT starts a new
    bucket. Same answers as `TokenBucketLimiter`."""

    def __init__(self, db, table, per_minute: float, burst: int, *, name: str) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self.db = db
        self.table = table
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.name = name

    async def hit(self, key: str, cost: float = 1.0) -> Decision:
        t = self.table
        key = f"{self.name}:{key}"[:200]
        now = time.time()
        refilled = sa.case(
            (t.c.tokens + (now - t.c.updated_at) * self.rate > self.burst, self.burst),
            else_=t.c.tokens + (now - t.c.updated_at) * self.rate,
        )
        for _ in range(3):
            async with self.db.connect() as c:
                left = (
                    await c.execute(
                        sa.update(t)
                        .where(t.c.key == key, refilled >= cost)
                        .values(tokens=refilled - cost, updated_at=now)
                        .returning(t.c.tokens)
                    )
                ).scalar_one_or_none()
                if left is not None:
                    return Decision(True, int(left), 0.0)
                row = (await c.execute(sa.select(t.c.tokens, t.c.updated_at).where(t.c.key == key))).first()
                if row is not None:
                    tokens = min(self.burst, row.tokens + max(0.0, now - row.updated_at) * self.rate)
                    return Decision(False, 0, (cost - tokens) / self.rate)
            try:
                async with self.db.connect() as c:
                    await c.execute(sa.insert(t).values(key=key, tokens=self.burst - cost, updated_at=now))
                return Decision(True, int(self.burst - cost), 0.0)
            except IntegrityError:
                continue  # another replica made the bucket first: take from it
        return Decision(False, 0, 1.0 / self.rate)


def limiters(settings, db=None, table=None) -> dict:
    """The gateway's limiters by name (api, generate, auth, write_ip): in this process, or, given the database
    and the `rate_buckets` table, shared by every replica."""
    s = settings
    out = {}
    for name, per_minute, burst in (
        ("api", s.rate_limit_per_minute, s.rate_limit_burst),
        ("generate", s.generate_rate_limit_per_minute, s.generate_rate_limit_burst),
        ("auth", s.auth_rate_limit_per_minute, s.auth_rate_limit_burst),
        ("write_ip", s.write_ip_rate_limit_per_minute, s.write_ip_rate_limit_burst),
    ):
        shared = db is not None and table is not None
        out[name] = (
            SharedLimiter(db, table, per_minute, burst, name=name)
            if shared
            else TokenBucketLimiter(per_minute, burst)
        )
    return out
