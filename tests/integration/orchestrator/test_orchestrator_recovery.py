"""Crashes, redeliveries, transient failures, the reconciler: a job completes once, renders once, records one
episode; a job that keeps failing ends `failed` with a dead letter."""

from __future__ import annotations

import asyncio
from unittest import mock

import pytest
from google.protobuf import json_format

from idlock import subjects
from idlock.bus import EventBus
from idlock.settings import NatsSettings
from idlock.v1 import common_pb2, events_pb2
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator.jobs import JobStore
from tests.integration.orchestrator.conftest import OWNER, orchestrator
from tests.metrics_probe import metrics_change


def count_renders(orch) -> list[str]:
    calls: list[str] = []
    peers = orch.servicer.peers
    real = peers.render_image

    async def counting(request, *, timeout_s):
        calls.append(request.job_id)
        return await real(request, timeout_s=timeout_s)

    peers.render_image = counting
    return calls


class DyingJobStore:
    """The job store of a worker process that dies: every store call after the render checkpoint was written hangs
    forever (no more writes, no ack). Production code writes exactly as it does; only the store stops answering."""

    def __init__(self, real: JobStore) -> None:
        self.real = real
        self.died = asyncio.Event()

    def __getattr__(self, name):
        return getattr(self.real, name)

    async def _maybe_die(self) -> None:
        if self.died.is_set():
            await asyncio.Event().wait()

    async def save_steps(self, job_id, worker_id, checkpoint, *, step, commit=False):
        await self._maybe_die()
        ok = await self.real.save_steps(job_id, worker_id, checkpoint, step=step, commit=commit)
        if "render" in checkpoint:
            self.died.set()
        return ok

    async def finish(self, *args, **kwargs):
        await self._maybe_die()
        return await self.real.finish(*args, **kwargs)


class PausingJobStore:
    """A job store whose write before the render waits until the test lets it go on."""

    def __init__(self, real: JobStore) -> None:
        self.real = real
        self.reached, self.go_on = asyncio.Event(), asyncio.Event()

    def __getattr__(self, name):
        return getattr(self.real, name)

    async def save_steps(self, job_id, worker_id, checkpoint, *, step, commit=False):
        if step == "render" and "render" not in checkpoint:
            self.reached.set()
            await self.go_on.wait()
        return await self.real.save_steps(job_id, worker_id, checkpoint, step=step, commit=commit)


async def wait_checkpoint(orch, job_id: str, step: str, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        job = await orch.servicer.store.get(job_id)
        if step in (job.checkpoint or {}):
            return
        assert asyncio.get_running_loop().time() < deadline, (
            f"no {step} checkpoint: {job.status} {job.checkpoint}"
        )
        await asyncio.sleep(0.05)


async def test_a_worker_killed_after_the_render_checkpoint_completes_once_on_another(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path) as orch:
        renders = count_renders(orch)
        real_store = orch.servicer.jobs.store
        dying = orch.servicer.jobs.store = DyingJobStore(real_store)
        cid = peers.add_character()
        job = (await orch.submit(cid)).job
        await asyncio.wait_for(dying.died.wait(), 20)
        await wait_checkpoint(orch, job.id, "render")
        # a crash leaves the lease in the row (nothing releases it) and the message unacked
        with mock.patch.object(JobStore, "release", autospec=True):
            await orch.servicer.stop_worker(grace_s=0.1)
        row = await orch.servicer.store.get(job.id)
        assert row.status == "running" and row.lease_owner == orch.servicer.worker_id

        # a new worker (another process) takes over once the dead worker's lease runs out
        orch.servicer.jobs.store = real_store
        orch.servicer.jobs.worker_id = "worker-2"
        await orch.servicer.start_worker()
        done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_SUCCEEDED, timeout_s=30)
        assert renders == [job.id]  # rendered once
        recorded = [e for e in peers.memory.record_requests if e.job_id == job.id]
        assert len(recorded) == 1 and peers.memory.episodes[(cid, job.id)].scene_index == 1
        assert done.attempts == 2 and done.metrics.attempts == 2
        # the resumed job had its context saved: consent was re-checked with GetCharacter (the first call was
        # the submission's), not with a second context
        assert peers.memory.calls["GetCharacter"] == 2 and peers.memory.calls["BuildContext"] == 1
        assert set(done.metrics.step_seconds) == {"context", "render", "score", "refine", "state", "record"}
        await asyncio.sleep(0.2)
        events = orch.events_of(job.id)
        assert events[0] == "queued" and events[-1] == "succeeded" and events.count("succeeded") == 1
        assert events.count("started") == 2 and events.count("progress") == 6  # each step reported once

        # a late duplicate of the work message (another msg id) is just acked: nothing runs again
        bus = await EventBus.connect(NatsSettings(url=peers.env["IDLOCK_NATS_URL"]))
        try:
            await bus.publish(
                subjects.JOB_GENERATE, events_pb2.GenerateJobWork(job_id=job.id), msg_id=f"{job.id}:dup"
            )
        finally:
            await bus.close()
        await asyncio.sleep(1.0)
        assert (
            renders == [job.id] and len([e for e in peers.memory.record_requests if e.job_id == job.id]) == 1
        )
        assert orch.events_of(job.id).count("succeeded") == 1


async def test_a_transient_failure_is_retried_without_rendering_again(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path) as orch:
        renders = count_renders(orch)
        cid = peers.add_character()
        # the channel itself retries UNAVAILABLE 4 times (RecordEpisode is idempotent); 5 failures outlast that
        peers.memory.fail_record = 5
        with metrics_change() as grew:
            job = (await orch.submit(cid)).job
            done = await orch.wait_status(
                job.id, [common_pb2.JOB_STATUS_SUCCEEDED, common_pb2.JOB_STATUS_FAILED]
            )
        assert done.status == common_pb2.JOB_STATUS_SUCCEEDED, done.error_message
        # waited out within the attempt (the step's retry window), and said so while it waited
        assert done.attempts == 1 and renders == [job.id] and not done.waiting_for
        assert grew("idlock_job_waits_total", waiting_for="memory") >= 1
        assert len(peers.memory.episodes) >= 1 and (cid, job.id) in peers.memory.episodes
        waits = [ev for _, ev in orch.events if ev.job_id == job.id and ev.waiting_for]
        assert waits and {(ev.waiting_for, ev.step) for ev in waits} == {("memory", "record")}
        assert "memory is restarting" in waits[0].message


async def test_a_peer_down_past_the_retry_window_fails_the_job_naming_it(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path, retry_window_s=1.5, retry_initial_s=0.2) as orch:
        renders = count_renders(orch)
        cid = peers.add_character()
        peers.memory.fail_record = 1000
        try:
            job = (await orch.submit(cid)).job
            done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_FAILED, timeout_s=30)
        finally:
            peers.memory.fail_record = 0
        assert done.error_code == "unavailable" and done.attempts == 1 and renders == [job.id]
        assert done.error_message.startswith("record: memory unavailable (gave up after")
        assert "memory is restarting" in done.error_message
        assert (cid, job.id) not in peers.memory.episodes


@pytest.mark.parametrize("local_start", [False, True], ids=["through-the-queue", "started-where-accepted"])
async def test_a_job_that_keeps_failing_ends_failed_with_a_dead_letter(peers, tmp_path, local_start) -> None:
    async with orchestrator(peers, tmp_path, max_deliver=3, local_start=local_start) as orch:
        renders = count_renders(orch)
        cid = peers.add_character()
        record = orch.servicer.peers.record_episode

        async def broken(*args, **kwargs):  # not a peer's outage: an error nobody knows (a bug)
            raise RuntimeError("memory answered something unexpected")

        orch.servicer.peers.record_episode = broken
        try:
            job = (await orch.submit(cid)).job
            done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_FAILED, timeout_s=30)
        finally:
            orch.servicer.peers.record_episode = record
        assert (
            done.error_code == "retries_exhausted" and "answered something unexpected" in done.error_message
        )
        # a job started where it was accepted has its own attempt, then the queue's deliveries
        assert done.attempts == 3 + local_start and renders == [job.id]
        await asyncio.sleep(0.5)
        letters = await orch.servicer.bus.list_dead_letters(subjects.JOB_GENERATE)
        mine = [d for d in letters if d.msg_id == job.id]
        assert len(mine) == 1 and mine[0].num_delivered == 3 and "unexpected" in mine[0].error
        assert orch.events_of(job.id)[-1] == "failed"


async def test_the_reconciler_re_enqueues_a_lost_job_and_gives_up_on_a_hopeless_one(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path, stuck_after_s=0.3, max_requeues=1) as orch:
        cid = peers.add_character()
        store = orch.servicer.store
        # a job whose work message was lost (created, never published)
        lost, _ = await store.create(
            owner_id=OWNER, character_id=cid, prompt="Arya reads a book in a library"
        )
        await asyncio.sleep(0.5)
        assert await orch.servicer.reconcile_once() == [lost.id]
        done = await orch.wait_status(lost.id, common_pb2.JOB_STATUS_SUCCEEDED)
        assert done.metrics.tags.props == ["book"] and list(done.metrics.tags.setting) == ["library"]

        hopeless, _ = await store.create(owner_id=OWNER, character_id=cid, prompt="x")
        async with store.db.session() as s:
            row = await s.get(type(hopeless), hopeless.id)
            row.requeues = 1
        await asyncio.sleep(0.5)
        assert await orch.servicer.reconcile_once() == []
        failed = await orch.wait_status(hopeless.id, common_pb2.JOB_STATUS_FAILED)
        assert failed.error_code == "stuck"


async def test_quota_pagination_and_watch(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path, worker_enabled=False, max_active_jobs_per_owner=2) as orch:
        cid = peers.add_character()
        a = (await orch.submit(cid)).job
        b = (await orch.submit(cid)).job
        import grpc
        import pytest

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await orch.submit(cid)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit 2" in err.value.details()
        page1 = await orch.stub.ListJobs(
            pb.ListJobsRequest(owner_id=OWNER, page=common_pb2.PageRequest(page_size=1))
        )
        page2 = await orch.stub.ListJobs(
            pb.ListJobsRequest(
                owner_id=OWNER, page=common_pb2.PageRequest(page_size=1, page_token=page1.next_page_token)
            )
        )
        assert [j.id for j in page1.jobs] == [b.id] and [j.id for j in page2.jobs] == [a.id]
        assert page1.next_page_token and not page2.next_page_token
        by_char = await orch.stub.ListJobs(pb.ListJobsRequest(owner_id=OWNER, character_id="char_other"))
        assert list(by_char.jobs) == []

        await orch.stub.CancelJob(pb.CancelJobRequest(job_id=a.id, owner_id=OWNER))
        watch = orch.stub.WatchJob(pb.WatchJobRequest(job_id=b.id, owner_id=OWNER))
        await orch.servicer.start_worker()
        seen = [r async for r in watch]
        kinds = [r.event for r in seen]
        assert kinds[0] in ("queued", "started", "progress") and kinds[-1] == "succeeded"
        assert "progress" in kinds and seen[-1].job.result_image.uri
        assert seen[-1].job.status == common_pb2.JOB_STATUS_SUCCEEDED


async def test_cancelling_a_running_job_stops_it_between_steps(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path) as orch:
        renders = count_renders(orch)
        paused = orch.servicer.jobs.store = PausingJobStore(orch.servicer.jobs.store)
        cid = peers.add_character()
        job = (await orch.submit(cid)).job
        await asyncio.wait_for(paused.reached.wait(), 20)
        cancelled = (await orch.stub.CancelJob(pb.CancelJobRequest(job_id=job.id, owner_id=OWNER))).job
        assert cancelled.status == common_pb2.JOB_STATUS_CANCELLED
        paused.go_on.set()
        await asyncio.sleep(0.5)
        final = await orch.wait_status(job.id, common_pb2.JOB_STATUS_CANCELLED)
        assert renders == [] and not final.result_image.uri
        assert all(e.job_id != job.id for e in peers.memory.record_requests)
        assert orch.events_of(job.id) == ["queued", "started", "progress", "cancelled"]


async def test_a_job_checkpointed_by_the_previous_release_resumes_after_the_upgrade(peers, tmp_path) -> None:
    """A row written before the checkpoint was a message (a dict of step results) resumes: the saved context and
    render are used as they are, nothing renders again, and the row ends in the current layout."""
    async with orchestrator(peers, tmp_path, stuck_after_s=0.3) as orch:
        renders = count_renders(orch)
        cid = peers.add_character()
        store = orch.servicer.store
        ref = json_format.MessageToDict(peers.references[0], preserving_proto_field_name=True)
        legacy = {  # what release 8265736 wrote once an image job had rendered
            "context": {
                "prompt": "Arya reads a book in a library",
                "negative_prompt": "blurry, deformed",
                "engine": "template",
                "fallback_reason": "",
                "memory_version": 1,
                "identity": {"encoder": peers.identity.encoder, "values": list(peers.identity.values)},
                "references": [ref],
                "model_seconds": 0.01,
                "seconds": 0.02,
            },
            "render": {
                "image": ref,
                "provenance": {"provider": "compositor", "model": "offline", "label": "offline/compositor"},
                "seconds": 0.25,
            },
        }
        job, _ = await store.create(owner_id=OWNER, character_id=cid, prompt="Arya reads a book in a library")
        async with store.db.session() as s:
            row = await s.get(type(job), job.id)
            row.status, row.step, row.attempts, row.checkpoint = "running", "score", 1, legacy
            row.lease_owner = "a-worker-of-the-previous-release"
        contexts = peers.memory.calls["BuildContext"]
        await asyncio.sleep(0.5)
        assert await orch.servicer.reconcile_once() == [job.id]
        done = await orch.wait_status(job.id, [common_pb2.JOB_STATUS_SUCCEEDED, common_pb2.JOB_STATUS_FAILED])
        assert done.status == common_pb2.JOB_STATUS_SUCCEEDED, done.error_message
        assert renders == [] and peers.memory.calls["BuildContext"] == contexts
        assert done.result_image.uri == peers.references[0].uri and done.metrics.provider == "compositor"
        assert done.metrics.step_seconds["render"] == 0.25 and done.attempts == 2
        assert done.metrics.idr_before.raw > 0.9  # scored the saved image against the saved identity
        assert list(done.metrics.tags.props) == ["book"]
        stored = (await store.get(job.id)).checkpoint
        assert set(stored) == {"context", "render", "score", "refine", "state", "record"}
        assert (
            stored["render"] == legacy["render"]
            and stored["context"]["identity"] == legacy["context"]["identity"]
        )
