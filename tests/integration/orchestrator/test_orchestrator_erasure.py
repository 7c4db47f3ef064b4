"""A deleted character's jobs (idlock.events.character.deleted): each becomes a tombstone (id, owner, status,
times; no prompt, options, checkpoint, result or message), its objects go, feedback on it goes, a running one is
cancelled first, and the API answers for them as for jobs that never were. A second delivery changes nothing."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from sqlalchemy import select

from idlock import subjects
from idlock.bus import EventBus
from idlock.settings import NatsSettings
from idlock.v1 import common_pb2, events_pb2
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator.models import Feedback, Job, Usage
from tests.integration.orchestrator.conftest import OWNER


async def _gone(orch, job_id: str, timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await orch.stub.GetJob(pb.GetJobRequest(job_id=job_id, owner_id=OWNER))
        except grpc.aio.AioRpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, e.details()
            return
        assert asyncio.get_running_loop().time() < deadline, f"job {job_id} still answers"
        await asyncio.sleep(0.1)


async def test_a_deleted_characters_jobs_become_tombstones(orch, peers) -> None:
    await orch.servicer.start_worker()
    cid, other = peers.add_character(), peers.add_character()
    done = (await orch.submit(cid, prompt="Arya hides the silver dagger under the mill")).job
    await orch.wait_status(done.id, common_pb2.JOB_STATUS_SUCCEEDED)
    await orch.stub.RecordFeedback(
        pb.RecordFeedbackRequest(
            job_id=done.id, owner_id=OWNER, rating=pb.FEEDBACK_RATING_UP, comment="the dagger glints"
        )
    )
    kept = (await orch.submit(other)).job
    await orch.wait_status(kept.id, common_pb2.JOB_STATUS_SUCCEEDED)
    objects = peers.data_dir / "objects" / "jobs"
    assert (objects / done.id).is_dir() and (objects / kept.id).is_dir()

    peers.memory.context_delay_s = 1.0  # the second job is in the middle of its context step when erased
    try:
        running = (await orch.submit(cid, prompt="Arya sails at night")).job
        await orch.wait_status(running.id, common_pb2.JOB_STATUS_RUNNING)
        bus = await EventBus.connect(NatsSettings(url=peers.env["IDLOCK_NATS_URL"]))
        try:
            for attempt in range(2):  # a redelivery (or a second erasure) finds nothing more to do
                await bus.publish(
                    subjects.CHARACTER_DELETED,
                    events_pb2.CharacterDeleted(character_id=cid, owner_id=OWNER),
                    msg_id=f"erase-{cid}-{attempt}",
                )
            await _gone(orch, done.id)
            await _gone(orch, running.id)
        finally:
            await bus.close()
    finally:
        peers.memory.context_delay_s = 0.0

    listed = await orch.stub.ListJobs(pb.ListJobsRequest(owner_id=OWNER))
    assert done.id not in {j.id for j in listed.jobs} and kept.id in {j.id for j in listed.jobs}
    await asyncio.sleep(1.5)  # the cancelled job's worker lets go; nothing it wrote may stay
    async with orch.servicer.rt.db.session() as s:
        rows = {j.id: j for j in (await s.execute(select(Job).where(Job.character_id == cid))).scalars()}
        feedback = list((await s.execute(select(Feedback).where(Feedback.character_id == cid))).scalars())
        usage = await s.get(Usage, done.id)
    assert set(rows) == {done.id, running.id}
    for job in rows.values():
        assert job.erased_at is not None and job.prompt == "" and job.checkpoint == {} and job.metrics == {}
        assert job.result_image == {} and job.options == {} and job.error_message == ""
    assert rows[done.id].status == "succeeded" and rows[running.id].status == "cancelled"
    assert rows[running.id].error_code == "erased"
    assert feedback == [] and usage is not None and usage.character_id == cid  # counts kept, no content
    assert not (objects / done.id).exists() and not (objects / running.id).exists()
    assert (objects / kept.id).is_dir()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await orch.stub.RecordFeedback(
            pb.RecordFeedbackRequest(job_id=done.id, owner_id=OWNER, rating=pb.FEEDBACK_RATING_UP)
        )
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_idempotency_key_reused_for_another_request_is_refused(orch, peers) -> None:
    """(Issue #20, 5.) The same key and body give the same job; a pose image fetched from a URL is copied anew
    for each submission, so two copies count as the same pose; anything else that differs is refused."""
    cid = peers.add_character()
    store = orch.servicer.rt.objects
    pose = [store.uri_for(f"uploads/{OWNER}/pose/{n}.png") for n in ("a", "b")]
    first = await orch.submit(cid, idempotency_key="k-1", pose_image_uri=pose[0])
    again = await orch.submit(cid, idempotency_key="k-1", pose_image_uri=pose[1])
    assert first.created and not again.created and again.job.id == first.job.id
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await orch.submit(cid, prompt="Arya sails at night", idempotency_key="k-1", pose_image_uri=pose[0])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "prompt" in err.value.details()
    assert dict(err.value.trailing_metadata())["idlock-reason"] == "idempotency_key_reused"
    upload = store.uri_for(f"uploads/{OWNER}/mine.png")  # the user's own upload is not a per-submission copy
    with pytest.raises(grpc.aio.AioRpcError, match="pose_image_uri"):
        await orch.submit(cid, idempotency_key="k-1", pose_image_uri=upload)
