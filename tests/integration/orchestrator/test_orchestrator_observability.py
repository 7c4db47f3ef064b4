"""What an operator sees of a job: the orchestrator's metrics (read from the process's exposition), the log lines of
its path (the worker, its steps and the peers it calls) with the job's ids and step, the job queue's depth read from
JetStream, and the administrators' usage report."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from idlock import telemetry
from idlock.mesh_metrics import total
from idlock.v1 import common_pb2
from idlock.v1 import orchestrator_service_pb2 as pb
from tests.integration.orchestrator.conftest import OWNER, orchestrator
from tests.metrics_probe import exposition, metrics_change

PROMPT = "Arya walks with a zebra-striped umbrella along the quay"
ENDED = [common_pb2.JOB_STATUS_SUCCEEDED, common_pb2.JOB_STATUS_FAILED]


@contextmanager
def json_log_lines() -> Iterator[list[dict]]:
    """Every log line written inside the block at INFO (the RPC lines at DEBUG), as the JSON the processes write."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)  # formats when written, inside the task that logs
    handler.setFormatter(telemetry.JsonFormatter("test"))
    root, rpc = logging.getLogger(), logging.getLogger("idlock.grpc")
    levels = (root.level, rpc.level)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    rpc.setLevel(logging.DEBUG)
    lines: list[dict] = []
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        rpc.setLevel(levels[1])
        lines.extend(json.loads(line) for line in out.getvalue().splitlines() if line.strip())


async def test_a_job_shows_in_the_metrics_and_its_log_lines_name_it(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path) as orch:
        cid = peers.add_character()
        with metrics_change() as grew, json_log_lines() as lines:
            job = (await orch.submit(cid, prompt=PROMPT)).job
            done = await orch.wait_status(job.id, ENDED)
        assert done.status == common_pb2.JOB_STATUS_SUCCEEDED, done.error_message
    m = done.metrics

    assert grew("idlock_jobs_submitted_total", kind="image") == 1
    assert grew("idlock_jobs_finished_total", kind="image", status="succeeded") == 1
    assert grew("idlock_job_duration_seconds_count", kind="image", status="succeeded") == 1
    for step in ("context", "render", "score", "state", "record"):
        assert grew("idlock_job_step_seconds_count", kind="image", step=step) == 1, step
    encoder = m.idr_before.encoder
    assert encoder and grew("idlock_idr_count", encoder=encoder, stage="before") == 1
    assert grew("idlock_idr_sum", encoder=encoder, stage="before") == pytest.approx(
        m.idr_before.calibrated, abs=1e-6
    )
    assert grew("idlock_idr_count", encoder=encoder, stage="final") == 1
    assert grew("idlock_refine_total") == 1
    assert grew("idlock_refine_total", outcome="not_needed" if not m.refine_needed else "refined") == (
        1 if not m.refine_needed or m.refined else 0
    )
    assert grew("idlock_moderation_total", stage="prompt", verdict="passed") == 1
    assert grew("idlock_near_copies_total", action="flagged") == (1 if m.copy.near_copy else 0)
    # the peers are in this process: their RPCs and the store show too
    assert grew("idlock_provider_seconds_count", provider="compositor", op="render") == 1
    assert grew("idlock_object_store_seconds_count", backend="file", op="put") >= 1

    mine = [line for line in lines if line.get("job_id") == job.id]
    assert mine, "no log line names the job"
    for line in mine:
        assert line["character_id"] == cid and line["user_id"] == OWNER and line.get("step"), line
    ends = {line["step"]: line for line in mine if "duration_ms" in line}
    assert {"context", "render", "score", "record"} <= set(ends), sorted(ends)
    assert all(line["duration_ms"] >= 0 for line in ends.values())
    # the peers' own lines (their RPCs, at DEBUG here) carry the step that called them
    rpcs = [line for line in mine if line["logger"] == "idlock.grpc"]
    assert {line["step"] for line in rpcs} >= {"render", "score"}, rpcs
    everything = "\n".join(json.dumps(line) for line in lines if line["level"] != "DEBUG")
    assert "zebra-striped" not in everything  # the prompt is never logged at INFO


async def test_the_queue_depth_is_read_from_jetstream(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path) as orch:
        await orch.servicer.stop_worker(grace_s=0)  # the consumer stays; nothing takes the work
        cid = peers.add_character()
        jobs = [(await orch.submit(cid, idempotency_key=f"q{i}")).job for i in range(3)]
        for _ in range(100):
            pending, _in_flight = await orch.servicer.reconciler.sample_queue()
            if pending >= 3:
                break
            await asyncio.sleep(0.05)
        assert pending == 3
        samples = exposition()  # gauges: their values, as scraped
        assert total(samples, "idlock_jobs_queue_depth") == 3
        assert total(samples, "idlock_jobs_consumer_lag") == 3
        await orch.servicer.start_worker()
        for job in jobs:
            assert (await orch.wait_status(job.id, ENDED)).status == common_pb2.JOB_STATUS_SUCCEEDED
        assert await orch.servicer.reconciler.sample_queue() == (0, 0)


async def test_usage_per_user_and_day(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path) as orch:
        mine, theirs = peers.add_character(), peers.add_character(owner_id="owner-2")
        first = (await orch.submit(mine)).job
        second = (await orch.submit(theirs, owner_id="owner-2")).job
        for job_id, owner in ((first.id, OWNER), (second.id, "owner-2")):
            ended = await orch.wait_status(job_id, ENDED, owner_id=owner)
            assert ended.status == common_pb2.JOB_STATUS_SUCCEEDED
        today = datetime.now(UTC).date().isoformat()

        report = await orch.stub.ListUsage(pb.ListUsageRequest())
        assert (report.from_day, report.to_day) == (
            (datetime.now(UTC).date() - timedelta(days=29)).isoformat(),
            today,
        )
        days = {(d.owner_id, d.day): d for d in report.days}
        assert set(days) == {(OWNER, today), ("owner-2", today)}
        day = days[(OWNER, today)]
        assert dict(day.jobs_by_status) == {"succeeded": 1}
        assert dict(day.renders_by_provider) == {"compositor": 1} and day.credits == 1
        assert day.cost_usd == pytest.approx(first.metrics.estimated_cost_usd or day.cost_usd)
        assert day.job_seconds > 0

        only = await orch.stub.ListUsage(pb.ListUsageRequest(owner_id="owner-2"))
        assert [d.owner_id for d in only.days] == ["owner-2"]
        paged = await orch.stub.ListUsage(pb.ListUsageRequest(page=common_pb2.PageRequest(page_size=1)))
        assert len(paged.days) == 1 and paged.next_page_token
        rest = await orch.stub.ListUsage(
            pb.ListUsageRequest(page=common_pb2.PageRequest(page_size=1, page_token=paged.next_page_token))
        )
        assert (
            len(rest.days) == 1
            and not rest.next_page_token
            and rest.days[0].owner_id != paged.days[0].owner_id
        )
        yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
        assert not (await orch.stub.ListUsage(pb.ListUsageRequest(to_day=yesterday))).days
        for bad, words in (
            (pb.ListUsageRequest(from_day="12/04/2026"), "from_day must be a day as YYYY-MM-DD"),
            (pb.ListUsageRequest(from_day=today, to_day=yesterday), "is after to_day"),
            (pb.ListUsageRequest(from_day="2020-01-01", to_day=today), "at most 366 days"),
            (pb.ListUsageRequest(page=common_pb2.PageRequest(page_token="nonsense")), "page_token"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await orch.stub.ListUsage(bad)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and words in err.value.details()
