"""The aged in-memory cache (reference photos' prints and faces, held renders): bounded, least recently used out
first, and no entry kept past its max age, used or not (an erasure cannot name its entries)."""

from __future__ import annotations

import asyncio

import pytest

from idlock.aged_cache import EXPIRED, FULL, MISSING, AgedCache
from tests.clock import ManualClock


def test_an_entry_is_served_until_its_max_age_then_never_again() -> None:
    clock = ManualClock()
    cache: AgedCache[str, object] = AgedCache(8, 300.0, clock=clock)
    cache.put("a", None)  # a photo with no face: None is a value, not a miss
    cache.put("b", [1.0, 2.0])
    clock.now += 299.0
    assert cache.get("a") is None and cache.get("b") == [1.0, 2.0]
    clock.now += 1.0  # used a moment ago, but computed 300 s ago: gone
    assert cache.get("a") is MISSING  # dropped when asked for
    assert len(cache) == 1 and cache.expire() == 1 and cache.get("b") is MISSING  # expire drops the rest
    assert cache.get("never put") is MISSING


def test_expire_drops_old_entries_nobody_asks_for() -> None:
    clock = ManualClock()
    cache: AgedCache[str, int] = AgedCache(8, 60.0, clock=clock)
    cache.put("old", 1)
    clock.now += 30.0
    cache.put("new", 2)
    clock.now += 30.0
    assert cache.expire() == 1 and len(cache) == 1
    assert cache.get("new") == 2 and cache.get("old") is MISSING
    cache.put("new", 3)  # computed again: its age starts again
    clock.now += 59.0
    assert cache.expire() == 0 and cache.get("new") == 3


def test_the_least_recently_used_entry_goes_first_and_size_zero_keeps_nothing() -> None:
    cache: AgedCache[str, int] = AgedCache(2, 300.0)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is MISSING and cache.get("a") == 1 and cache.get("c") == 3
    off: AgedCache[str, int] = AgedCache(0, 300.0)
    off.put("a", 1)
    assert off.get("a") is MISSING and len(off) == 0
    with pytest.raises(ValueError, match="max_age_s"):
        AgedCache(2, 0)


async def test_the_started_expiry_drops_entries_without_being_asked() -> None:
    cache: AgedCache[str, int] = AgedCache(8, 0.08)
    cache.start()
    try:
        cache.put("a", 1)
        await asyncio.sleep(0.2)
        assert len(cache) == 0  # nobody asked for it: the periodic expiry took it
    finally:
        await cache.close()


def test_each_entry_dropped_is_told_with_why_and_a_default_stands_for_a_miss() -> None:
    clock = ManualClock()
    dropped: list[tuple[str, str]] = []
    cache: AgedCache[str, int] = AgedCache(
        1, 10.0, clock=clock, on_drop=lambda k, why: dropped.append((k, why))
    )
    cache.put("a", 1)
    cache.put("b", 2)  # a is pushed out
    clock.now += 10.0
    assert cache.get("b", None) is None
    cache.put("c", 3)
    cache.pop("c")  # taken away on purpose: not a drop
    assert dropped == [("a", FULL), ("b", EXPIRED)] and len(cache) == 0
