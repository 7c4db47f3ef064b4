"""The key figures of a running mesh, read from every process's metrics endpoint (`idlock status --metrics`):
jobs by status, job duration p50/p95 and the share under the SLO, the job queue, the mean calibrated IDR, and the
slowest provider and step."""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

SLO_S = 7.0


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition."""
    return [
        Sample(s.name, dict(s.labels), float(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def scrape(url: str, timeout_s: float = 2.0) -> list[Sample]:
    """Every sample a metrics endpoint serves (an unreachable one raises OSError)."""
    with urllib.request.urlopen(url, timeout=timeout_s) as r:
        return parse(r.read().decode())


def _matches(s: Sample, name: str, match: dict[str, str]) -> bool:
    return s.name == name and all(s.labels.get(k) == v for k, v in match.items())


def total(samples: list[Sample], name: str, **match: str) -> float:
    return sum(s.value for s in samples if _matches(s, name, match))


def quantile(samples: list[Sample], name: str, q: float, **match: str) -> float | None:
    """The q-quantile of a histogram (summed over the other labels), interpolated inside its bucket."""
    buckets: dict[float, float] = defaultdict(float)
    for s in samples:
        if _matches(s, f"{name}_bucket", match):
            buckets[float(s.labels["le"])] += s.value
    if not buckets or buckets.get(math.inf, 0.0) <= 0:
        return None
    bounds = sorted(buckets)
    rank = q * buckets[math.inf]
    lower, below = 0.0, 0.0
    for le in bounds:
        if buckets[le] >= rank:
            if math.isinf(le):
                return lower  # beyond the last finite bucket: its bound is all we know
            share = (rank - below) / (buckets[le] - below) if buckets[le] > below else 1.0
            return lower + (le - lower) * share
        lower, below = le, buckets[le]
    return lower


def share_under(samples: list[Sample], name: str, bound: float, **match: str) -> float | None:
    """Share of a histogram's observations at or under a bucket bound."""
    under = total(samples, f"{name}_bucket", le=str(bound), **match)
    count = total(samples, f"{name}_count", **match)
    return under / count if count else None


@dataclass
class KeyFigures:
    jobs: dict[str, float] = field(default_factory=dict)
    submitted: float = 0.0
    duration_p50_s: float | None = None
    duration_p95_s: float | None = None
    under_slo: float | None = None
    queue_depth: float = 0.0
    queue_lag: float = 0.0
    idr_mean: float | None = None
    idr_count: float = 0.0
    step_p95_s: dict[str, float] = field(default_factory=dict)
    provider_p95_s: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)


def key_figures(samples: list[Sample]) -> KeyFigures:
    """The figures an operator looks at first, from the samples of every process put together."""
    k = KeyFigures()
    for s in samples:
        if s.name == "idlock_jobs_finished_total":
            k.jobs[s.labels["status"]] = k.jobs.get(s.labels["status"], 0.0) + s.value
        elif s.name == "idlock_jobs_submitted_total":
            k.submitted += s.value
        elif s.name == "idlock_jobs_queue_depth":
            k.queue_depth = max(k.queue_depth, s.value)
        elif s.name == "idlock_jobs_consumer_lag":
            k.queue_lag = max(k.queue_lag, s.value)
        elif s.name.endswith("_errors_total") and s.value:
            k.errors[s.name] = k.errors.get(s.name, 0.0) + s.value
    k.duration_p50_s = quantile(samples, "idlock_job_duration_seconds", 0.5, kind="image", status="succeeded")
    k.duration_p95_s = quantile(
        samples, "idlock_job_duration_seconds", 0.95, kind="image", status="succeeded"
    )
    k.under_slo = share_under(samples, "idlock_job_duration_seconds", SLO_S, kind="image", status="succeeded")
    k.idr_count = total(samples, "idlock_idr_count", stage="final")
    if k.idr_count:
        k.idr_mean = total(samples, "idlock_idr_sum", stage="final") / k.idr_count
    for label, name, into in (
        ("step", "idlock_job_step_seconds", k.step_p95_s),
        ("provider", "idlock_provider_seconds", k.provider_p95_s),
    ):
        for value in sorted({s.labels[label] for s in samples if s.name == f"{name}_count" and s.value}):
            p95 = quantile(samples, name, 0.95, **{label: value})
            if p95 is not None:
                into[value] = p95
    return k


__all__ = ["KeyFigures", "Sample", "key_figures", "parse", "quantile", "scrape", "share_under", "total"]
