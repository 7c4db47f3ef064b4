"""JSON log lines carry the ids of the current request, job, character and trace."""

from __future__ import annotations

import json
import logging

from opentelemetry.sdk.trace import TracerProvider

from idlock import telemetry


def test_json_log_line_carries_ids_and_trace() -> None:
    formatter = telemetry.JsonFormatter("probe")
    tracer = TracerProvider().get_tracer("test")
    record = logging.LogRecord("idlock.test", logging.INFO, __file__, 1, "rendered scene %d", (3,), None)
    record.fields = {"step": "render"}
    with (
        tracer.start_as_current_span("job") as span,
        telemetry.bound(job_id="job_1", character_id="char_9", request_id="r1"),
    ):
        doc = json.loads(formatter.format(record))
    assert doc["msg"] == "rendered scene 3"
    assert doc["component"] == "probe" and doc["step"] == "render"
    assert (doc["job_id"], doc["character_id"], doc["request_id"]) == ("job_1", "char_9", "r1")
    assert doc["trace_id"] == format(span.get_span_context().trace_id, "032x")
    outside = json.loads(formatter.format(record))
    assert "job_id" not in outside and "trace_id" not in outside
