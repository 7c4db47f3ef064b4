"""Per-request time spent inside models and providers (text embedder, LLM), for the pipeline's
"orchestration overhead" figure (end-to-end minus model time)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class ModelClock:
    """Accumulates the wall seconds one request spends awaiting models and providers.

    One clock per request, passed down explicitly: a shared or context-local one would mix concurrent requests.
    A failed or timed-out provider call counts too (the time was still spent waiting on the provider).
    """

    __slots__ = ("seconds",)

    def __init__(self) -> None:
        self.seconds = 0.0

    async def timed(self, call: Awaitable[T]) -> T:
        t0 = time.perf_counter()
        try:
            return await call
        finally:
            self.seconds += time.perf_counter() - t0
