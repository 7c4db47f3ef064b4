"""The orchestrator end to end over real servers: nats-server, identity, render (offline compositor), the fake
memory service and the orchestrator itself on port 0."""

from __future__ import annotations

import asyncio
import sys
import time

import grpc
import pytest

from idlock import nsfw
from idlock.settings import StorageSettings
from idlock.storage import open_store
from idlock.v1 import common_pb2
from idlock.v1 import memory_service_pb2 as mpb
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator.image_flow import REFINER_UNAVAILABLE
from services.orchestrator.views import to_proto
from tests.integration.orchestrator.conftest import OWNER, orchestrator


async def test_submit_runs_to_succeeded_with_metrics_and_a_stored_image(orch) -> None:
    writes = orch.log_writes()
    cid = orch.peers.add_character()
    resp = await orch.submit(cid, idempotency_key="k-1")
    assert resp.created and resp.job.id.startswith("job_") and resp.job.status == common_pb2.JOB_STATUS_QUEUED
    job = await orch.wait_status(resp.job.id, [common_pb2.JOB_STATUS_SUCCEEDED, common_pb2.JOB_STATUS_FAILED])
    assert job.status == common_pb2.JOB_STATUS_SUCCEEDED, job.error_message
    assert job.result_image.uri.endswith(f"jobs/{job.id}/image.png") and job.result_image.sha256
    store = await open_store(StorageSettings(), orch.peers.data_dir)
    assert await store.exists(job.result_image.uri)

    m = job.metrics
    assert set(m.step_seconds) == {"context", "render", "score", "refine", "state", "record"}
    # the compositor's face is the reference's: flagged (these tests run with IDLOCK_ORCHESTRATOR_NEAR_COPY=flag)
    assert m.copy.checked and m.copy.near_copy and m.copy_note.startswith("flagged") and not m.regenerated
    assert all(v >= 0 for v in m.step_seconds.values()) and m.total_seconds > 0
    assert m.provider == "compositor" and m.provider_label == "offline/compositor"
    # the output classifier's word on the image (the optional extra; without it the result says so)
    assert m.moderation == ("nudenet: passed" if nsfw.installed() else nsfw.NOT_CLASSIFIED)
    assert m.prompt_engine == "template" and m.state_source == "heuristic"
    assert m.idr_before.encoder == "dlib" and m.idr_before.raw > 0.5
    assert m.refine_needed == (m.idr_before.calibrated < 0.70)
    # no refiner runs beside these tests: the gate fires, the job still succeeds with the unrefined image
    assert m.refine_note.startswith(REFINER_UNAVAILABLE) if m.refine_needed else m.refine_note == ""
    assert not m.refined
    assert list(m.tags.clothing) == ["red cloak"] and list(m.tags.props) == ["sword"]
    assert list(m.tags.setting) == ["forest"] and list(m.tags.mood) == ["determined"]
    assert m.scene_index == 1 and m.attempts == 1
    # model time: the model services' whole steps; none in the heuristic state or where no refiner ran
    assert m.step_model_seconds["render"] == m.step_seconds["render"] > 0
    assert m.step_model_seconds["score"] == m.step_seconds["score"] > 0
    assert m.step_model_seconds["refine"] == m.step_model_seconds["state"] == 0.0

    # the row is written before the render (the context, and a cancel would stop it there), after it, before a
    # refiner call and before the episode is recorded (the effect boundary: the job commits); the cheap steps
    # ride along, and every step is in the row at the end
    assert writes == [("render", ["context"]), ("render", ["context", "render"])] + (
        [("refine", ["context", "render", "score"])] if m.refine_needed else []
    ) + [("record", ["context", "refine", "render", "score", "state"], "commit")]
    row = await orch.servicer.store.get(job.id)
    assert set(row.checkpoint) == {"context", "render", "score", "refine", "state", "record"}
    # at the start consent was checked on the character BuildContext returned: GetCharacter ran once, at submission
    assert orch.peers.memory.calls["GetCharacter"] == 1 and orch.peers.memory.calls["BuildContext"] == 1

    # one episode recorded, with the image, IDR, tags and a face embedding
    eps = [e for (c, _), e in orch.peers.memory.episodes.items() if c == cid]
    assert len(eps) == 1 and eps[0].job_id == job.id and eps[0].image.uri == job.result_image.uri
    assert eps[0].state_source == "heuristic" and eps[0].idr.raw == pytest.approx(m.idr_before.raw)
    assert len(eps[0].face_embedding.values) == 128

    usage = await orch.servicer.store.usage(job.id)
    assert usage is not None and usage.provider == "compositor" and usage.owner_id == OWNER

    # the same idempotency key returns the same job, not a second one
    again = await orch.submit(cid, idempotency_key="k-1")
    assert (
        not again.created and again.job.id == job.id and again.job.status == common_pb2.JOB_STATUS_SUCCEEDED
    )

    # events in order, one of each
    await asyncio.sleep(0.2)
    assert orch.events_of(job.id) == ["queued", "started", *["progress"] * 6, "succeeded"]
    steps = [ev.step for subj, ev in orch.events if ev.job_id == job.id and subj.endswith("progress")]
    assert steps == ["context", "render", "score", "refine", "state", "record"]
    done = next(ev for subj, ev in orch.events if ev.job_id == job.id and subj.endswith("succeeded"))
    assert done.result_image.uri == job.result_image.uri and done.metrics.scene_index == 1

    # listing and feedback
    listed = await orch.stub.ListJobs(pb.ListJobsRequest(owner_id=OWNER))
    assert [j.id for j in listed.jobs] == [job.id]
    fb = await orch.stub.RecordFeedback(
        pb.RecordFeedbackRequest(job_id=job.id, owner_id=OWNER, rating=pb.FEEDBACK_RATING_UP, comment="great")
    )
    assert fb.recorded
    rows = await orch.servicer.store.feedback(job.id)
    assert [(r.rating, r.comment) for r in rows] == [("up", "great")]


async def test_unknown_character_and_other_owner_are_not_found(orch) -> None:
    cid = orch.peers.add_character()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await orch.submit("char_nope")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await orch.submit(cid, owner_id="someone-else")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    job = (await orch.submit(cid)).job
    for call in (
        orch.stub.GetJob(pb.GetJobRequest(job_id=job.id, owner_id="someone-else")),
        orch.stub.CancelJob(pb.CancelJobRequest(job_id=job.id, owner_id="someone-else")),
        orch.stub.RecordFeedback(
            pb.RecordFeedbackRequest(job_id=job.id, owner_id="someone-else", rating=pb.FEEDBACK_RATING_DOWN)
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in orch.stub.WatchJob(pb.WatchJobRequest(job_id=job.id, owner_id="someone-else")):
            pass
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    others = await orch.stub.ListJobs(pb.ListJobsRequest(owner_id="someone-else"))
    assert list(others.jobs) == []
    await orch.wait_status(job.id, common_pb2.JOB_STATUS_SUCCEEDED)


async def test_submission_is_validated(orch) -> None:
    cid = orch.peers.add_character()
    no_consent = orch.peers.add_character(consent=False)
    weak = orch.peers.add_character(
        status=mpb.CHARACTER_STATUS_NEEDS_MORE_REFS,
        reasons=("only one usable reference", "face too small in reference 2"),
    )
    cases = [
        ({"character_id": cid, "prompt": "   "}, grpc.StatusCode.INVALID_ARGUMENT, "prompt is empty"),
        ({"character_id": cid, "prompt": "x" * 5000}, grpc.StatusCode.INVALID_ARGUMENT, "the limit is 2000"),
        ({"character_id": cid, "prompt": "ok", "owner_id": ""}, grpc.StatusCode.INVALID_ARGUMENT, "owner_id"),
        (
            {
                "character_id": cid,
                "prompt": "ok",
                "options": pb.GenerationOptions(video=True, video_duration_s=90),
            },
            grpc.StatusCode.INVALID_ARGUMENT,
            "video_duration_s must be between 0 and 60",
        ),
        (
            {"character_id": cid, "prompt": "ok", "options": pb.GenerationOptions(dialogue="hello")},
            grpc.StatusCode.INVALID_ARGUMENT,
            "apply to videos only",
        ),
        ({"character_id": no_consent, "prompt": "ok"}, grpc.StatusCode.FAILED_PRECONDITION, "consent"),
        (
            {"character_id": weak, "prompt": "ok"},
            grpc.StatusCode.FAILED_PRECONDITION,
            "only one usable reference",
        ),
    ]
    for kw, code, text in cases:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await orch.submit(**kw)
        assert err.value.code() == code, kw
        assert text in err.value.details(), err.value.details()


async def test_cancel_a_queued_job_and_terminal_jobs_cannot_be_cancelled(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path, worker_enabled=False) as orch:
        cid = peers.add_character()
        job = (await orch.submit(cid)).job
        watch = orch.stub.WatchJob(pb.WatchJobRequest(job_id=job.id, owner_id=OWNER))
        first = await watch.read()
        assert first.event == "queued" and first.job.status == common_pb2.JOB_STATUS_QUEUED
        cancelled = (await orch.stub.CancelJob(pb.CancelJobRequest(job_id=job.id, owner_id=OWNER))).job
        assert cancelled.status == common_pb2.JOB_STATUS_CANCELLED
        last = await watch.read()
        assert last.event == "cancelled"
        assert await watch.read() is grpc.aio.EOF
        # the worker starts later: the message is acked, nothing renders
        await orch.servicer.start_worker()
        await asyncio.sleep(1.0)
        job = await orch.wait_status(job.id, common_pb2.JOB_STATUS_CANCELLED)
        assert orch.peers.memory.record_requests == [] or all(
            e.job_id != job.id for e in orch.peers.memory.record_requests
        )
        assert orch.events_of(job.id) == ["queued", "cancelled"]

        done = (await orch.submit(cid)).job
        await orch.wait_status(done.id, common_pb2.JOB_STATUS_SUCCEEDED)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await orch.stub.CancelJob(pb.CancelJobRequest(job_id=done.id, owner_id=OWNER))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.details() == "job already succeeded"


async def test_consent_revoked_before_the_job_starts_fails_it_with_the_reason(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path, worker_enabled=False) as orch:
        cid = peers.add_character()
        job = (await orch.submit(cid)).job
        peers.memory.characters[cid].consent_given = False
        await orch.servicer.start_worker()
        job = await orch.wait_status(job.id, common_pb2.JOB_STATUS_FAILED)
        assert job.error_code == "consent_revoked" and "consent" in job.error_message
        assert not job.result_image.uri
        assert all(e.job_id != job.id for e in peers.memory.record_requests)
        await asyncio.sleep(0.2)
        assert orch.events_of(job.id) == ["queued", "started", "failed"]


async def test_a_character_that_lost_its_references_ends_needs_more_refs(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path, worker_enabled=False) as orch:
        cid = peers.add_character()
        job = (await orch.submit(cid)).job
        peers.memory.characters[cid].status = mpb.CHARACTER_STATUS_NEEDS_MORE_REFS
        peers.memory.characters[cid].status_reasons.append("reference 1 shows two faces")
        await orch.servicer.start_worker()
        done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_NEEDS_MORE_REFS)
        assert done.error_code == "needs_more_refs" and "reference 1 shows two faces" in done.error_message
        await asyncio.sleep(0.2)
        failed = [ev for subj, ev in orch.events if ev.job_id == job.id and subj.endswith(".failed")]
        assert len(failed) == 1 and failed[0].status == common_pb2.JOB_STATUS_NEEDS_MORE_REFS


async def test_a_watch_is_woken_by_the_changes_made_here(peers, tmp_path) -> None:
    # with a 10 s look at the row, every event arriving sooner came from the store's change signal
    async with orchestrator(peers, tmp_path, watch_poll_s=10.0) as orch:
        cid = peers.add_character()
        job = (await orch.submit(cid)).job
        t0 = time.monotonic()
        events = [
            r.event async for r in orch.stub.WatchJob(pb.WatchJobRequest(job_id=job.id, owner_id=OWNER))
        ]
        assert time.monotonic() - t0 < 6, events
        assert events[-1] == "succeeded" and "progress" in events, events
        assert orch.servicer.store.changes._watchers == {}  # the watch let go when it ended


async def test_a_watch_takes_what_this_process_wrote_without_reading_the_row(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path, watch_poll_s=10.0, worker_enabled=False) as orch:
        cid = peers.add_character()
        job = (await orch.submit(cid)).job
        store = orch.servicer.store
        real_get = store.get
        readers: list[str] = []

        async def get(job_id):
            readers.append(sys._getframe(1).f_code.co_name)
            return await real_get(job_id)

        store.get = get
        try:
            stream = orch.stub.WatchJob(pb.WatchJobRequest(job_id=job.id, owner_id=OWNER))
            seen = [await stream.read()]
            await orch.servicer.start_worker()
            while (r := await stream.read()) is not grpc.aio.EOF:
                seen.append(r)
        finally:
            store.get = real_get
        assert "watch" not in readers and readers.count("get_owned") == 1, readers  # the one first look
        assert [r.event for r in seen][:2] == ["queued", "started"] and seen[-1].event == "succeeded"
        running = {r.message: r.job for r in seen if r.event == "progress"}  # a progress message is the step
        assert set(running) >= {"render", "record"}, list(running)
        assert all(j.status == common_pb2.JOB_STATUS_RUNNING and j.attempts == 1 for j in running.values())
        # the job the watch built from the writes is the row's
        assert seen[-1].job == to_proto(await real_get(job.id))
        assert running["record"].context.prompt and running["record"].context == seen[-1].job.context


async def test_the_context_is_asked_for_while_the_job_is_claimed(peers, tmp_path) -> None:
    peers.memory.context_prompts.clear()
    peers.memory.context_delay_s = 0.4  # the fake memory is shared by the module's tests
    async with orchestrator(peers, tmp_path, worker_enabled=False) as orch:
        claim = orch.servicer.store.claim

        async def slow_claim(*args, **kwargs):
            await asyncio.sleep(0.4)
            return await claim(*args, **kwargs)

        orch.servicer.store.claim = slow_claim
        cid = peers.add_character()
        job = (await orch.submit(cid)).job
        await orch.servicer.start_worker()
        done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_SUCCEEDED)
        # one BuildContext, asked from the queue's message while the claim took its 0.4 s: the context step
        # found it (nearly) answered instead of waiting its own 0.4 s
        peers.memory.context_delay_s = 0.0
        assert peers.memory.context_prompts == [job.prompt]
        assert done.metrics.step_seconds["context"] < 0.25, done.metrics.step_seconds


async def test_an_early_context_that_does_not_match_the_row_is_dropped(peers, tmp_path) -> None:
    peers.memory.context_prompts.clear()
    async with orchestrator(peers, tmp_path, local_start=False) as orch:  # the queue's delivery reads the row
        get = orch.servicer.store.get
        sent = orch.log_work()

        async def stale(job_id):
            row = await get(job_id)
            if row is not None and row.status == "queued":
                row.prompt = "Arya sails a ship"  # read before the claim; the claimed row is the truth
            return row

        orch.servicer.store.get = stale
        cid = peers.add_character()
        job = (await orch.submit(cid)).job
        await orch.wait_status(job.id, common_pb2.JOB_STATUS_SUCCEEDED)
        orch.servicer.store.get = get
        # the queue's message names the job and carries no prompt
        assert sent and all(w.job_id == job.id and not w.prompt and not w.style_overrides for w in sent)
        assert sorted(peers.memory.context_prompts) == sorted(["Arya sails a ship", job.prompt])
        row = await orch.servicer.store.get(job.id)
        assert (
            job.prompt in row.checkpoint["context"]["prompt"]
            and "ship" not in row.checkpoint["context"]["prompt"]
        )
