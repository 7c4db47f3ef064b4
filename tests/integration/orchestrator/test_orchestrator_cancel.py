"""Cancellation is an effect boundary: a job cancelled at any step boundary before its scene is recorded ends
cancelled with no episode and no usage; a cancel that comes once the job has committed to recording its scene is
refused as too late (cancel_too_late), and the job ends succeeded, saying so, with exactly one episode."""

from __future__ import annotations

import asyncio

import pytest

from idlock.errors import PreconditionFailed
from idlock.v1 import common_pb2
from tests.integration.orchestrator.conftest import OWNER, orchestrator

#: where the owner cancels: just before the flow's call of that step goes out, or (after_record) just after it
BOUNDARIES = ["context", "render", "score", "record", "after_record"]
PEER_CALL = {
    "context": "build_context",
    "render": "render_image",
    "score": "score_identity",
    "record": "record_episode",
    "after_record": "record_episode",
}


def _character_of(method: str, args: tuple) -> str:
    first = args[0]
    return first if isinstance(first, str) else first.character_id


async def test_a_cancel_at_every_step_boundary_leaves_no_episode_or_comes_too_late(peers, tmp_path) -> None:
    async with orchestrator(peers, tmp_path) as orch:
        servicer = orch.servicer
        chars = {b: peers.add_character() for b in BOUNDARIES}
        boundary_of = {c: b for b, c in chars.items()}
        jobs: dict[str, str] = {}
        answers: dict[str, str] = {}
        renders: list[str] = []

        async def cancel(boundary: str) -> None:
            if boundary in answers:
                return
            try:
                await servicer.submissions.cancel(jobs[boundary], OWNER)
                answers[boundary] = "cancelled"
            except PreconditionFailed as e:
                answers[boundary] = e.reason or e.code

        def hook(method: str) -> None:
            real = getattr(servicer.peers, method)

            async def call(*args, **kwargs):
                boundary = boundary_of.get(_character_of(method, args))
                if method == "render_image":
                    renders.append(args[0].job_id)
                if boundary is not None and PEER_CALL[boundary] == method and boundary != "after_record":
                    # shielded: a context call can be the worker's early read, which the worker drops when its claim
                    # finds the job cancelled; the cancel (already committed then) still records its answer
                    await asyncio.shield(asyncio.ensure_future(cancel(boundary)))
                out = await real(*args, **kwargs)
                if boundary == "after_record" and method == "record_episode":
                    await cancel(boundary)
                return out

            setattr(servicer.peers, method, call)

        for method in set(PEER_CALL.values()):
            hook(method)
        for boundary in BOUNDARIES:
            jobs[boundary] = (await orch.submit(chars[boundary])).job.id
        ended = {
            b: await orch.wait_status(
                jobs[b], [common_pb2.JOB_STATUS_CANCELLED, common_pb2.JOB_STATUS_SUCCEEDED], timeout_s=60
            )
            for b in BOUNDARIES
        }
        await asyncio.sleep(0.5)  # anything still on its way would land now

        for b in ("context", "render", "score"):
            job = ended[b]
            assert answers[b] == "cancelled" and job.status == common_pb2.JOB_STATUS_CANCELLED, b
            assert (chars[b], job.id) not in peers.memory.episodes, (
                f"cancelled at {b}: an episode was recorded"
            )
            assert await servicer.store.usage(job.id) is None
            assert orch.events_of(job.id)[-1] == "cancelled" and "succeeded" not in orch.events_of(job.id)
        assert renders.count(jobs["context"]) == 0  # stopped before the paid step
        for b in ("record", "after_record"):
            job = ended[b]
            assert answers[b] == "cancel_too_late", b
            assert job.status == common_pb2.JOB_STATUS_SUCCEEDED and job.error_code == "cancel_too_late"
            assert "cancel came after the scene was being recorded" in job.error_message
            assert [k for k in peers.memory.episodes if k == (chars[b], job.id)] == [(chars[b], job.id)]
            succeeded = [ev for s, ev in orch.events if ev.job_id == job.id and s.endswith(".succeeded")]
            assert len(succeeded) == 1 and succeeded[0].error_code == "cancel_too_late"
            assert "cancelled" not in orch.events_of(job.id)


@pytest.mark.parametrize("step", ["render"])
async def test_a_cancel_while_waiting_for_a_peer_stops_the_wait(peers, tmp_path, step) -> None:
    async with orchestrator(peers, tmp_path, retry_initial_s=0.2, retry_max_interval_s=0.3) as orch:
        cid = peers.add_character()
        real = orch.servicer.peers.render_image

        async def down(*args, **kwargs):
            from idlock.errors import Unavailable

            raise Unavailable(
                "render.RenderImage: failed to connect to all addresses",
                details={"peer": "render.RenderImage"},
            )

        orch.servicer.peers.render_image = down
        try:
            job = (await orch.submit(cid)).job
            for _ in range(100):
                row = await orch.servicer.store.get(job.id)
                if row.waiting_for:
                    break
                await asyncio.sleep(0.05)
            seen = await orch.wait_status(job.id, common_pb2.JOB_STATUS_RUNNING)
            assert (
                row.waiting_for == "render"
                and seen.waiting_for == "render"
                and seen.HasField("waiting_since")
            )
            await orch.servicer.submissions.cancel(job.id, OWNER)
            done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_CANCELLED)
            await asyncio.sleep(0.8)  # the waiting worker notices at its next try and stops
            assert not done.waiting_for and (cid, job.id) not in peers.memory.episodes
            row = await orch.servicer.store.get(job.id)
            assert row.status == "cancelled" and row.waiting_for == ""
        finally:
            orch.servicer.peers.render_image = real
