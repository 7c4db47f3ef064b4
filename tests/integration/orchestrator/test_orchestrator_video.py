"""Video jobs in the orchestrator against real identity + render services (Veo through the real google-genai
client, answered by the fake Veo server): the provider operation is checkpointed while it is polled, a worker
that dies mid-poll is replaced by one that resumes the same operation (one creation), per-frame IDR and the
video episode; a video whose frames score low is regenerated once and the better one kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from unittest import mock

import pytest
from skimage import data as skdata

from idlock import refs
from idlock.images import encode_png
from idlock.settings import StorageSettings
from idlock.storage import open_store
from idlock.v1 import common_pb2
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator.jobs import JobStore
from tests.fakes.gemini_server import FakeGeminiServer, VeoPlan
from tests.integration.orchestrator.conftest import Peers, mesh_peers, orchestrator


@pytest.fixture(scope="module")
def fake_veo():
    with FakeGeminiServer() as fake:
        yield fake


@pytest.fixture(scope="module")
async def peers(nats_server, tmp_path_factory, fake_veo) -> AsyncIterator[Peers]:
    data_dir = tmp_path_factory.mktemp("orch-video-mesh")
    store = await open_store(StorageSettings(), data_dir)
    face = skdata.astronaut()
    ref = await refs.put_image(store, "characters/arya/ref_0.png", encode_png(face), width=512, height=512)
    render_env = {
        "IDLOCK_RENDER_PROVIDERS": '["compositor"]',
        "IDLOCK_RENDER_VIDEO_PROVIDERS": '["veo"]',
        "IDLOCK_RENDER_GEMINI_API_KEY": "k",
        "IDLOCK_RENDER_GEMINI_BASE_URL": fake_veo.base_url,
        "IDLOCK_RENDER_VEO_POLL_INTERVAL_S": "0.05",
    }
    async with mesh_peers(nats_server, data_dir, ref, render_env) as peers:
        yield peers


def watch_render_requests(orch) -> list:
    seen: list = []
    real = orch.servicer.peers.render_video

    async def recording(request, *, timeout_s):
        seen.append(request)
        return await real(request, timeout_s=timeout_s)

    orch.servicer.peers.render_video = recording
    return seen


async def test_worker_dies_mid_poll_and_the_next_one_resumes_the_operation(peers, fake_veo, tmp_path) -> None:
    fake_veo.reset()
    fake_veo.veo_script(VeoPlan.finish(after=40))  # ~2 s of polling
    async with orchestrator(peers, tmp_path, ack_wait_s=2.0) as orch:
        requests = watch_render_requests(orch)
        cid = peers.add_character()
        job = (
            await orch.submit(
                cid,
                prompt="Arya walks along the beach in a red cloak",
                options=pb.GenerationOptions(video=True, video_duration_s=2, dialogue="Onwards."),
            )
        ).job
        # the operation is in the job row while the provider is still being polled
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            row = await orch.servicer.store.get(job.id)
            if (row.checkpoint or {}).get("operations", {}).get("render"):
                break
            assert asyncio.get_running_loop().time() < deadline, row.checkpoint
            await asyncio.sleep(0.05)
        operation = row.checkpoint["operations"]["render"]["name"]
        running = (await orch.stub.GetJob(pb.GetJobRequest(job_id=job.id, owner_id="owner-1"))).job
        assert running.provider_operation == operation and "render" not in row.checkpoint
        assert fake_veo.operations[operation].polls < 40

        # the worker dies (its lease stays in the row); another worker takes the job over
        with mock.patch.object(JobStore, "release", autospec=True):
            await orch.servicer.stop_worker(grace_s=0.1)
        orch.servicer.jobs.worker_id = "worker-2"
        await orch.servicer.start_worker()
        done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_SUCCEEDED, timeout_s=40)

    assert fake_veo.veo_creations == 1  # resumed, never paid twice
    assert [r.operation_name for r in requests] == ["", operation]
    assert done.provider_operation == operation and done.result_video.uri.endswith("/video.mp4")
    m = done.metrics
    assert m.provider == "veo" and m.frames_scored >= 2 and len(m.frame_idrs) == m.frames_scored
    assert m.frame_idrs[0].timestamp_s == 0.0 and m.frame_idrs[0].face_found
    assert 0 < m.frame_idr_min <= m.frame_idr_mean and m.video_duration_s > 1.5 and not m.regenerated
    episode = peers.memory.episodes[(cid, job.id)]
    assert episode.kind == common_pb2.MEDIA_KIND_VIDEO and episode.dialogue == "Onwards."
    assert episode.video.uri == done.result_video.uri and len(episode.frame_idrs) == m.frames_scored
    assert episode.image.uri  # the first frame, the episode's poster
    assert "cloak" in " ".join(episode.tags.clothing)


async def test_a_failed_operation_is_not_resumed_the_retry_starts_a_new_one(
    peers, fake_veo, tmp_path
) -> None:
    fake_veo.reset()
    fake_veo.veo_script(VeoPlan.fail(after=2, code=13, message="backend hiccup"), VeoPlan.finish(after=1))
    async with orchestrator(peers, tmp_path) as orch:
        requests = watch_render_requests(orch)
        cid = peers.add_character()
        job = (
            await orch.submit(cid, prompt="Arya by the lake", options=pb.GenerationOptions(video=True))
        ).job
        done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_SUCCEEDED, timeout_s=40)
    # the render step waited out the provider's failure within the same attempt (its retry window)
    assert fake_veo.veo_creations == 2 and done.attempts == 1
    assert [r.operation_name for r in requests] == ["", ""]
    first, second = list(fake_veo.operations)
    assert done.provider_operation == second != first


async def test_a_low_scoring_video_is_regenerated_once_and_the_better_kept(peers, fake_veo, tmp_path) -> None:
    """The first video shows a face that is not the character's (a blank image as the face source): the frame
    IDR is below the threshold, a second video is rendered with the right face and kept."""
    from tests.fakes.gemini_server import fake_video

    fake_veo.reset()
    other = fake_video("a stranger", None, seconds=2.0)  # no face at all
    fake_veo.veo_script(VeoPlan.finish(after=1, video=other), VeoPlan.finish(after=1))
    async with orchestrator(peers, tmp_path) as orch:
        cid = peers.add_character()
        job = (
            await orch.submit(cid, prompt="Arya in the city", options=pb.GenerationOptions(video=True))
        ).job
        done = await orch.wait_status(job.id, common_pb2.JOB_STATUS_SUCCEEDED, timeout_s=40)
    m = done.metrics
    assert fake_veo.veo_creations == 2 and m.regenerated and m.refine_needed
    assert m.frame_idr_min >= 0.7 and "kept the new video" in m.refine_note
    assert "regenerate" in m.step_seconds
    assert done.result_video.uri.split("/")[-2] == "video_regen1"
