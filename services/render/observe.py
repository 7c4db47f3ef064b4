"""Render's provider metrics (`idlock.metrics`): each provider call's latency, its errors by code, the tries it
took beyond the first, and the fallbacks to the next provider."""

from __future__ import annotations

import time

from idlock import metrics as m
from idlock.errors import IdlockError
from services.render.models import RenderResult


def model_of(provider: object, name: str) -> str:
    return str(getattr(provider, "model", "") or name)


def call_ended(
    name: str,
    model: str,
    op: str,
    started: float,
    result: RenderResult | None = None,
    error: BaseException | None = None,
) -> None:
    """One provider call ended, with a result or an error (an error is a fallback when the next one is tried)."""
    m.PROVIDER_SECONDS.labels(name, result.model if result else model, op).observe(
        time.perf_counter() - started
    )
    if result is not None:
        if result.attempts > 1:
            m.PROVIDER_RETRIES.labels(name, result.model).inc(result.attempts - 1)
        return
    code = (error.reason or error.code) if isinstance(error, IdlockError) else type(error).__name__
    m.PROVIDER_ERRORS.labels(name, model, code).inc()
    attempts = error.details.get("attempts", 1) if isinstance(error, IdlockError) else 1
    if isinstance(attempts, int) and attempts > 1:
        m.PROVIDER_RETRIES.labels(name, model).inc(attempts - 1)


def fell_back(name: str) -> None:
    m.PROVIDER_FALLBACKS.labels(name).inc()


__all__ = ["call_ended", "fell_back", "model_of"]
