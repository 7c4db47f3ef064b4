"""Logs, traces and metrics for every process.

- JSON log lines carrying the trace, request, job, character and user ids and the job's step of the current
  task (contextvars; `bound`), which gRPC calls carry to the peer (`BOUND`: metadata keys);
- an OpenTelemetry tracer provider, exporting over OTLP/gRPC when an endpoint is configured;
- a Prometheus metrics endpoint per process.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import Counter, Histogram, start_http_server

from idlock.settings import TelemetrySettings

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
job_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="")
character_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("character_id", default="")
user_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("user_id", default="")
step_var: contextvars.ContextVar[str] = contextvars.ContextVar("step", default="")
#: log fields bound to the current task, and the gRPC metadata key each travels in to a peer
BOUND = (
    ("request_id", request_id_var, "x-request-id"),
    ("job_id", job_id_var, "x-job-id"),
    ("character_id", character_id_var, "x-character-id"),
    ("user_id", user_id_var, "x-user-id"),
    ("step", step_var, "x-step"),
)

RPC_TOTAL = Counter("idlock_rpc_total", "RPCs served", ["service", "method", "code"])
RPC_SECONDS = Histogram(
    "idlock_rpc_seconds",
    "RPC latency",
    ["service", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)

_configured_component: str | None = None


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the ids of the current request, job and trace."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "component": self.component,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            doc["trace_id"] = format(span.trace_id, "032x")
            doc["span_id"] = format(span.span_id, "016x")
        for key, var, _ in BOUND:
            value = var.get()
            if value:
                doc[key] = value
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            doc.update(extra)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup(component: str, settings: TelemetrySettings | None = None) -> TelemetrySettings:
    """Configure logging, tracing and the metrics endpoint once per process."""
    global _configured_component
    settings = settings or TelemetrySettings()
    if _configured_component is not None:
        return settings
    _configured_component = component

    handler = logging.StreamHandler(sys.stderr)
    if settings.log_json:
        handler.setFormatter(JsonFormatter(component))
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("httpx", "httpcore", "botocore", "urllib3", "nats"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))

    provider = TracerProvider(resource=Resource.create({"service.name": f"idlock-{component}"}))
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
    trace.set_tracer_provider(provider)

    if settings.metrics_port >= 0:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
    return settings


def log_fields(**fields: object) -> dict[str, dict[str, object]]:
    """`logger.info("...", extra=log_fields(step="render"))` adds fields to the JSON line."""
    return {"fields": fields}


@contextmanager
def bound(
    *,
    request_id: str | None = None,
    job_id: str | None = None,
    character_id: str | None = None,
    user_id: str | None = None,
    step: str | None = None,
) -> Iterator[None]:
    """Bind ids (and the job's step) to the log lines written inside the block, and to the calls it makes."""
    given = {
        "request_id": request_id,
        "job_id": job_id,
        "character_id": character_id,
        "user_id": user_id,
        "step": step,
    }
    tokens = [(var, var.set(given[key])) for key, var, _ in BOUND if given[key] is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)
