"""A job accepted by a replica with a free slot runs there at once (`local_start.py`): its work message is held
in the outbox, never published while the replica lives; it is published when the replica dies (the lease runs
out), or hands the job to the queue when the replica shuts down. Deliveries from the queue wait for a slot a local
start holds."""

from __future__ import annotations

import asyncio
import contextlib

from idlock import mesh_auth, telemetry
from idlock.grpc_server import deadline_var
from idlock.v1 import common_pb2
from idlock.v1 import orchestrator_service_pb2 as pb
from tests.integration.orchestrator.conftest import OWNER, orchestrator
from tests.metrics_probe import Change


def ids(sent: list) -> list[str]:
    return [w.job_id for w in sent]


async def held(orch, job_id: str) -> list:
    return [r for r in await orch.servicer.rt.relay.pending(job_id) if r.kind == "work"]


@contextlib.asynccontextmanager
async def a_running_job(orch, peers, context_s: float):
    """A job submitted and running here, its context step taking `context_s` until the block ends."""
    peers.memory.context_delay_s = context_s
    try:
        job = (await orch.submit(peers.add_character())).job
        await orch.wait_status(job.id, common_pb2.JOB_STATUS_RUNNING)
        yield job
    finally:
        peers.memory.context_delay_s = 0.0


async def wait_for(predicate, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_job_accepted_with_a_free_slot_runs_here_without_the_queue(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path) as orch:
        sent = orch.log_work()
        cid = peers.add_character()
        peers.memory.context_delay_s = 0.3
        grew = Change()  # the metrics from now on
        try:
            job = (await orch.submit(cid)).job
            assert job.status == common_pb2.JOB_STATUS_QUEUED  # accepted as before
            # while it runs, its work waits in the outbox, due when the lease would run out
            (row,) = await held(orch, job.id)
            assert row.msg_id == job.id and row.attempts == 0
        finally:
            peers.memory.context_delay_s = 0.0
        done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_SUCCEEDED)
        assert done.attempts == 1 and ids(sent) == []
        # counted by how it came
        assert grew("idlock_jobs_started_total", via="here") == 1
        assert grew("idlock_jobs_started_total", via="queue") == 0
        assert await held(orch, job.id) == []  # deleted with the job's end
        await wait_for(lambda: "succeeded" in orch.events_of(job.id))
        # its queued event went out (from the outbox) before its started
        assert orch.events_of(job.id)[:2] == ["queued", "started"]


async def test_with_every_slot_taken_a_job_goes_through_the_queue_and_waits(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path, concurrency=1) as orch:
        sent = orch.log_work()
        cid = peers.add_character()
        peers.memory.context_delay_s = 0.5
        grew = Change()  # the metrics from now on
        try:
            first = (await orch.submit(cid, prompt="Arya rides a horse through a forest")).job
            second = (await orch.submit(cid, prompt="Arya reads a book in a library")).job
            # the second's work is published, and its delivery waits for the one slot
            await wait_for(lambda: ids(sent) == [second.id])
            assert (await orch.servicer.store.get(second.id)).status == "queued"
        finally:
            peers.memory.context_delay_s = 0.0
        a = await orch.wait_status(first.id, common_pb2.JOB_STATUS_SUCCEEDED)
        b = await orch.wait_status(second.id, common_pb2.JOB_STATUS_SUCCEEDED)
        assert a.attempts == b.attempts == 1
        assert (
            grew("idlock_jobs_started_total", via="here")
            == grew("idlock_jobs_started_total", via="queue")
            == 1
        )
        rows = [await orch.servicer.store.get(j.id) for j in (first, second)]
        assert rows[1].started_at >= rows[0].finished_at  # never two at once on the one slot


async def test_a_replica_that_dies_mid_job_leaves_its_work_to_the_queue(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path, ack_wait_s=1.5, outbox_poll_s=0.2) as orch:
        sent = orch.log_work()
        store, local = orch.servicer.store, orch.servicer.rt.local
        async with a_running_job(orch, peers, 30.0) as job:
            # the replica dies: it neither releases the job nor hands its work over, and its renewals stop
            release, release_work = store.release, store.release_work
            store.release = store.release_work = lambda *a, **k: asyncio.sleep(0)
            (run,) = local._running
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            store.release, store.release_work = release, release_work
            assert ids(sent) == [] and len(await held(orch, job.id)) == 1
        # once the lease has run out, the held work comes due, and a worker takes the job over
        done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_SUCCEEDED, timeout_s=20)
        assert ids(sent) == [job.id] and done.attempts == 2
        assert [e.job_id for e in peers.memory.record_requests].count(job.id) == 1


async def test_a_shutdown_hands_a_running_job_to_the_queue(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path) as orch:
        sent = orch.log_work()
        async with a_running_job(orch, peers, 30.0) as job:
            await orch.servicer.stop_worker(grace_s=0.2)
            assert orch.servicer.rt.local._running == set()
            # released, and its work published at once (no lease to wait out)
            await wait_for(lambda: ids(sent) == [job.id])
            row = await orch.servicer.store.get(job.id)
            assert row.status == "running" and row.lease_owner == ""
        await orch.servicer.start_worker()
        done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_SUCCEEDED)
        assert done.attempts == 2


async def test_a_job_cancelled_while_it_runs_here_leaves_no_work_behind(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path) as orch:
        sent = orch.log_work()
        async with a_running_job(orch, peers, 0.5) as job:
            await orch.stub.CancelJob(pb.CancelJobRequest(job_id=job.id, owner_id=OWNER))
            await wait_for(lambda: not orch.servicer.rt.local._running)
        assert (await orch.servicer.store.get(job.id)).status == "cancelled"
        assert await held(orch, job.id) == [] and ids(sent) == []


async def test_a_job_started_here_does_not_inherit_the_submissions_rpc_context(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path) as orch:
        cid = peers.add_character()
        worker = orch.servicer.jobs
        run = worker.run
        seen: list = []

        async def recorded(job_id, **kw):
            # what a peer call without its own timeout, and every log line, would take from the context
            seen.append((deadline_var.get(), telemetry.request_id_var.get(), mesh_auth.caller()))
            return await run(job_id, **kw)

        worker.run = recorded
        try:
            job = (
                await orch.stub.SubmitGeneration(
                    pb.SubmitGenerationRequest(
                        character_id=cid, owner_id=OWNER, prompt="Arya crosses a bridge at dawn"
                    ),
                    timeout=5.0,
                )
            ).job
            done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_SUCCEEDED)
        finally:
            worker.run = run
        assert done.attempts == 1 and seen == [(None, "", "")]
