"""Paid renders happen at most once per output: a call to a paid provider is counted in object storage *before* it
is made (`{prefix}/paid_calls.json`), so a render service that died mid-call is seen to repeat it (the job's
metrics say so, and its cost counts both); and a rendered image whose saving failed is held here and saved by the
retry, never rendered again. No gRPC here."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from idlock.aged_cache import FULL, AgedCache
from idlock.errors import NotFound, StorageUnavailable
from idlock.retry import RetryPolicy
from idlock.storage import ObjectStore

log = logging.getLogger("idlock.render.paid")

T = TypeVar("T")

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


def held_renders(max_age_s: float, limit: int = 64, clock: Callable[[], float] = time.monotonic) -> AgedCache:
    """Rendered results not yet saved (object storage failed), by output, for the retry to save. The oldest go past
    `limit`, and none is kept past `max_age_s` from when it was rendered: no job waits for it that long (a job's
    deadline), and an image of a character erased meanwhile, whose job never asks again, does not stay in memory."""
    return AgedCache(limit, max_age_s, clock=clock, on_drop=_dropped)


def _dropped(key: Any, why: str) -> None:
    because = "more are waiting for storage than are held" if why == FULL else "held past its max age"
    log.warning("dropped an unsaved render of %s: %s", key, because)


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


__all__ = ["PAID_CALLS", "SAVE_RETRY", "count_paid_call", "held_renders", "saving"]
