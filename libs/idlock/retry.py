"""Retry policies (as Temporal's activities have them): exponential backoff with jitter and a maximum interval,
inside a total retry window; which errors are worth another try is decided by their class.

Transient: a peer or object storage unavailable (connection refused, restarting, full, not writable), a deadline
that ran out, a provider's quota. Permanent: bad input, not found, no consent, a moderation refusal; they fail at
once. No gRPC or NATS here: callers pass the attempt and learn what to do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from idlock.errors import (
    DeadlineExceeded,
    IdlockError,
    QuotaExceeded,
    StorageUnavailable,
    Unavailable,
)

#: errors a step waits out within its retry window
TRANSIENT: tuple[type[BaseException], ...] = (Unavailable, DeadlineExceeded, QuotaExceeded, TimeoutError)


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to try again. `window_s` bounds the whole wait, counted from the first failure."""

    initial_s: float = 1.0
    multiplier: float = 2.0
    max_interval_s: float = 30.0
    window_s: float = 600.0
    #: each delay is drawn from [delay * (1 - jitter), delay]: callers that failed together spread out
    jitter: float = 0.2
    #: a window of its own for some peers (e.g. a slow provider behind render), by what `waiting_for` names
    window_by_peer_s: tuple[tuple[str, float], ...] = ()

    def window_for(self, peer: str) -> float:
        return dict(self.window_by_peer_s).get(peer, self.window_s)

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number `retry` (1 for the first)."""
        base = min(self.initial_s * self.multiplier ** max(retry - 1, 0), self.max_interval_s)
        r = (rng or random).random()
        return base * (1.0 - self.jitter * r)


def waiting_for(e: BaseException) -> str:
    """What a transient error waits for, in one word: "storage", or the peer named in the error ("render" from
    "render.RenderImage"), or "provider" for a timeout or quota with no peer."""
    if isinstance(e, StorageUnavailable):
        return "storage"
    if isinstance(e, IdlockError):
        peer = str(e.details.get("peer", "")) if isinstance(e.details, dict) else ""
        if peer:
            return peer.split(".", 1)[0]
    return "provider" if isinstance(e, QuotaExceeded) else "peer"


def failure_code(e: BaseException) -> str:
    """The job's error code when the window ran out: the finer reason when there is one (storage_full, ...)."""
    if isinstance(e, IdlockError):
        return e.reason or e.code
    return "deadline_exceeded" if isinstance(e, TimeoutError) else "unavailable"


__all__ = ["TRANSIENT", "RetryPolicy", "failure_code", "waiting_for"]
