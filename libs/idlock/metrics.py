"""Every domain metric the processes export, in one place (names, labels, buckets), and the helpers that record
them.

Each process serves what it registered at its metrics endpoint (`idlock.telemetry.setup`); a metric a process
never touches is exported with no samples. Label values come from short fixed sets (kinds, statuses, steps,
provider and model names from settings, error codes): never an id, a prompt or a user.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

#: around the seed's SLO (95% of jobs under 7 s)
JOB_BUCKETS = (0.5, 1, 2, 3, 4, 5, 6, 7, 8, 10, 15, 20, 30, 60, 120, 300, 600, 1800)
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7, 10, 20, 60, 120, 600)
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
IDR_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))

# --- jobs (orchestrator) --------------------------------------------------------------------------------------
JOBS_SUBMITTED = Counter(
    "idlock_jobs_submitted_total", "Jobs accepted (an idempotent resubmission is not counted again)", ["kind"]
)
JOBS_FINISHED = Counter("idlock_jobs_finished_total", "Jobs that ended, by how", ["kind", "status"])
JOBS_STARTED = Counter(
    "idlock_jobs_started_total",
    "Job attempts a worker claimed, by how the job came: started by the replica that accepted it (here) or "
    "delivered by the job queue (queue)",
    ["kind", "via"],
)
JOB_SECONDS = Histogram(
    "idlock_job_duration_seconds",
    "A job's time from submission to its end (the SLO: 95% of image jobs under 7 s)",
    ["kind", "status"],
    buckets=JOB_BUCKETS,
)
STEP_SECONDS = Histogram(
    "idlock_job_step_seconds",
    "One step of a job (context, render, score, refine, ...)",
    ["kind", "step"],
    buckets=STEP_BUCKETS,
)
QUEUE_DEPTH = Gauge("idlock_jobs_queue_depth", "Job messages no worker has been given yet (JetStream)")
QUEUE_LAG = Gauge(
    "idlock_jobs_consumer_lag", "Job messages not yet acknowledged: waiting plus being worked on (JetStream)"
)
JOBS_WAITING = Counter(
    "idlock_job_waits_total",
    "A step waited for a peer or storage to come back (one per try)",
    ["waiting_for"],
)
IDR = Histogram(
    "idlock_idr",
    "Calibrated IDR of job results per encoder: as rendered (before), after refinement (after), as delivered"
    " (final; a video's mean frame IDR)",
    ["encoder", "stage"],
    buckets=IDR_BUCKETS,
)
REFINE_GATE = Counter(
    "idlock_refine_total",
    "What the refine gate did per image job: not_needed, refined, kept_original, unavailable",
    ["outcome"],
)
NEAR_COPIES = Counter(
    "idlock_near_copies_total", "Results that were near-copies of a reference, by what was done", ["action"]
)
MODERATION = Counter(
    "idlock_moderation_total", "Moderation verdicts on prompts and outputs", ["stage", "verdict"]
)

# --- the bus --------------------------------------------------------------------------------------------------
BUS_REDELIVERIES = Counter(
    "idlock_bus_redeliveries_total", "Deliveries after a message's first", ["consumer"]
)
BUS_DEAD_LETTERS = Counter(
    "idlock_bus_dead_letters_total", "Messages given up and dead-lettered", ["consumer"]
)

# --- providers, models, stores -----------------------------------------------------------------------------------
PROVIDER_SECONDS = Histogram(
    "idlock_provider_seconds",
    "A render provider's call (image, edit, video), retries included",
    ["provider", "model", "op"],
    buckets=CALL_BUCKETS,
)
PROVIDER_ERRORS = Counter(
    "idlock_provider_errors_total",
    "Render provider calls that failed, by code",
    ["provider", "model", "code"],
)
PROVIDER_RETRIES = Counter(
    "idlock_provider_retries_total", "Tries of a provider call after its first", ["provider", "model"]
)
PROVIDER_FALLBACKS = Counter(
    "idlock_provider_fallbacks_total", "A provider skipped or failed, so the next one was tried", ["provider"]
)
LLM_SECONDS = Histogram(
    "idlock_llm_seconds",
    "A language or vision model call",
    ["provider", "model", "purpose"],
    buckets=CALL_BUCKETS,
)
LLM_ERRORS = Counter(
    "idlock_llm_errors_total", "Language or vision model calls that failed", ["provider", "model", "purpose"]
)
PROMPT_CACHE = Counter("idlock_prompt_cache_total", "Composed-prompt cache lookups, hit or miss", ["result"])
VECTOR_SECONDS = Histogram(
    "idlock_vector_seconds",
    "Vector store calls: Qdrant's (query_points, upsert, scroll, retrieve, count, delete), and search_local"
    " (a character's episode texts ranked in memory, in local mode)",
    ["op"],
    buckets=CALL_BUCKETS,
)
VECTOR_ERRORS = Counter("idlock_vector_errors_total", "Vector store calls that failed", ["op"])
OBJECT_STORE_SECONDS = Histogram(
    "idlock_object_store_seconds", "Object store calls", ["backend", "op"], buckets=CALL_BUCKETS
)
OBJECT_STORE_ERRORS = Counter(
    "idlock_object_store_errors_total",
    "Object store calls that failed (not_found is not counted: it is an answer)",
    ["backend", "op", "reason"],
)

# --- self-learning (trainer) and refinement ----------------------------------------------------------------------
TRAINING_RUNS = Counter(
    "idlock_training_runs_total", "Training runs that ended: approved, rejected or failed", ["outcome"]
)
LORA_ACTIVATIONS = Counter("idlock_lora_activations_total", "LoRA versions made active", ["how"])
LORA_ROLLBACKS = Counter("idlock_lora_rollbacks_total", "Active LoRAs rolled back to the previous version")
REFINE_ATTEMPTS = Counter(
    "idlock_refine_attempts_total",
    "Refiner attempts by method and outcome (chosen, copy, rejected, not_better, failed)",
    ["method", "outcome"],
)
IDENTITY_BATCH = Histogram(
    "idlock_identity_batch_size",
    "Scene scorings sent to an identity worker together (1: a worker was free when it came)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)


@contextmanager
def timed(histogram: Histogram, errors: Counter | None = None, **labels: str) -> Iterator[None]:
    """Observe the block's duration in `histogram`; an exception also counts in `errors` (same labels)."""
    started = time.perf_counter()
    try:
        yield
    except Exception:
        if errors is not None:
            errors.labels(**labels).inc()
        raise
    finally:
        histogram.labels(**labels).observe(time.perf_counter() - started)


@contextmanager
def object_store_call(backend: str, op: str) -> Iterator[None]:
    """Time an object store call; a failure counts by its reason (a missing object is an answer, not one)."""
    started = time.perf_counter()
    try:
        yield
    except Exception as e:
        if getattr(e, "code", "") != "not_found":
            reason = getattr(e, "reason", "") or getattr(e, "code", "") or type(e).__name__
            OBJECT_STORE_ERRORS.labels(backend, op, str(reason).lower()).inc()
        raise
    finally:
        OBJECT_STORE_SECONDS.labels(backend, op).observe(time.perf_counter() - started)


class TimedCalls:
    """A client whose async methods named in `ops` are timed in `histogram` (label `op`), failures counted in
    `errors`; everything else passes through."""

    def __init__(self, client: Any, ops: frozenset[str], histogram: Histogram, errors: Counter) -> None:
        self._inner = client
        self._ops = ops
        self._histogram = histogram
        self._errors = errors

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in self._ops:
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            with timed(self._histogram, self._errors, op=name):
                return await attr(*args, **kwargs)

        return call
