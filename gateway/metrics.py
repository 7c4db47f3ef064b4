"""Prometheus metrics of the gateway process (served at GET /api/v1/admin/metrics)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

HTTP_REQUESTS = Counter(
    "idlock_gateway_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "idlock_gateway_http_seconds",
    "HTTP request latency (until the response starts)",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
RATE_LIMITED = Counter("idlock_gateway_rate_limited_total", "Requests refused by a rate limit", ["limit"])


def exposition() -> tuple[bytes, str]:
    """(body, content type) of the Prometheus text format for everything this process registered."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
