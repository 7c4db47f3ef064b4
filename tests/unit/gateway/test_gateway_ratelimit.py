"""Token buckets: bursts, refill over time, Retry-After, independent keys, bounded memory."""

from __future__ import annotations

import pytest

from gateway.errors import ApiError
from gateway.ratelimit import TokenBucketLimiter
from tests.clock import ManualClock


def test_burst_then_refused_with_retry_after() -> None:
    clock = ManualClock()
    limiter = TokenBucketLimiter(per_minute=6, burst=3, clock=clock)  # one token every 10 s
    assert [limiter.hit("u").allowed for _ in range(3)] == [True, True, True]
    refused = limiter.hit("u")
    assert not refused.allowed
    assert refused.retry_after_s == pytest.approx(10.0)
    assert refused.retry_after_header == "10"


def test_refill_over_time_never_above_burst() -> None:
    clock = ManualClock()
    limiter = TokenBucketLimiter(per_minute=60, burst=2, clock=clock)
    limiter.hit("u"), limiter.hit("u")
    assert not limiter.hit("u").allowed
    clock.now += 1.0
    assert limiter.hit("u").allowed
    clock.now += 3600
    assert [limiter.hit("u").allowed for _ in range(3)] == [True, True, False]


def test_keys_are_independent() -> None:
    limiter = TokenBucketLimiter(per_minute=1, burst=1, clock=ManualClock())
    assert limiter.hit("alice").allowed
    assert not limiter.hit("alice").allowed
    assert limiter.hit("bob").allowed


def test_check_raises_429_with_retry_after_header() -> None:
    limiter = TokenBucketLimiter(per_minute=2, burst=1, clock=ManualClock())
    limiter.check("u")
    with pytest.raises(ApiError) as info:
        limiter.check("u", "generation requests")
    err = info.value
    assert err.status == 429 and err.code == "rate_limited"
    assert err.headers["Retry-After"] == "30"
    assert "too many generation requests" in err.message


def test_retry_after_is_at_least_one_second() -> None:
    clock = ManualClock()
    limiter = TokenBucketLimiter(per_minute=600, burst=1, clock=clock)  # 10 tokens a second
    limiter.hit("u")
    clock.now += 0.09
    assert limiter.hit("u").retry_after_header == "1"


def test_memory_is_bounded() -> None:
    limiter = TokenBucketLimiter(per_minute=60, burst=5, clock=ManualClock(), max_keys=100)
    for i in range(1000):
        limiter.hit(f"user{i}")
    assert len(limiter) == 100


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucketLimiter(per_minute=0, burst=1)
    with pytest.raises(ValueError):
        TokenBucketLimiter(per_minute=1, burst=0)
