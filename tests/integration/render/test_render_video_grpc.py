"""RenderVideo over gRPC: Veo through the real google-genai client against the fake, stored to object storage,
idempotent per job, and resumed (never created twice) when the render service restarts mid-poll."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from skimage import data as skdata

from idlock import refs
from idlock.images import encode_png
from idlock.settings import StorageSettings
from idlock.storage import open_store
from idlock.v1 import render_service_pb2 as pb
from idlock.v1 import render_service_pb2_grpc as pb_grpc
from services.render.video import probe_video
from tests.fakes.gemini_server import FakeGeminiServer, VeoPlan
from tests.harness import running_service


def _env(fake: FakeGeminiServer, **kw: str) -> dict[str, str]:
    return {
        "IDLOCK_RENDER_PROVIDERS": '["compositor"]',
        "IDLOCK_RENDER_VIDEO_PROVIDERS": '["veo","compositor"]',
        "IDLOCK_RENDER_GEMINI_API_KEY": "k",
        "IDLOCK_RENDER_GEMINI_BASE_URL": fake.base_url,
        "IDLOCK_RENDER_VEO_POLL_INTERVAL_S": "0.05",
        **kw,
    }


async def _request(tmp_path, job_id: str) -> pb.RenderVideoRequest:
    store = await open_store(StorageSettings(), tmp_path)
    face = skdata.astronaut()
    ref = await refs.put_image(store, "characters/c1/ref_0.png", encode_png(face), width=512, height=512)
    return pb.RenderVideoRequest(
        prompt="Arya walks along the beach",
        references=[ref],
        duration_s=2,
        job_id=job_id,
        seed=5,
        dialogue="Hello there.",
    )


async def test_veo_video_is_stored_and_replayed_per_job(tmp_path) -> None:
    with FakeGeminiServer() as fake:
        fake.veo_script(VeoPlan.finish(after=2))
        request = await _request(tmp_path, "job_v1")
        async with running_service("render", tmp_path, **_env(fake)) as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            first = await stub.RenderVideo(request)
            again = await stub.RenderVideo(request)
            providers = {p.name: p for p in (await stub.ListProviders(pb.ListProvidersRequest())).providers}
        assert fake.veo_creations == 1  # the second call replayed the stored result
        assert first == again
        assert first.provenance.provider == "veo" and first.operation_name and first.polls == 2
        assert first.video.uri.endswith("videos/job_v1/video.mp4") and first.video.mime == "video/mp4"
        assert first.video.duration_s > 1.5 and first.video.fps == 8.0
        store = await open_store(StorageSettings(), tmp_path)
        assert probe_video(await store.get(first.video.uri)).frames == first.video.duration_s * 8
        assert providers["veo"].available and list(providers["veo"].media) == [2]  # MEDIA_KIND_VIDEO


async def test_render_service_restart_mid_poll_resumes_the_operation(tmp_path) -> None:
    with FakeGeminiServer() as fake:
        fake.veo_script(VeoPlan.finish(after=12))
        request = await _request(tmp_path, "job_v2")
        async with running_service("render", tmp_path, **_env(fake)) as channel:
            call = pb_grpc.RenderServiceStub(channel).RenderVideo(request)
            for _ in range(200):
                if fake.veo_polls >= 3:
                    break
                await asyncio.sleep(0.05)
            call.cancel()
        assert fake.veo_creations == 1 and fake.veo_polls >= 3
        async with running_service("render", tmp_path, **_env(fake)) as channel:
            resumed = await pb_grpc.RenderServiceStub(channel).RenderVideo(request)
        assert fake.veo_creations == 1  # the new process polled the recorded operation, it did not start one
        assert resumed.operation_name == next(iter(fake.operations))
        assert resumed.video.uri and resumed.provenance.provider == "veo"


async def test_failed_and_stalled_operations_map_to_status_codes(tmp_path) -> None:
    with FakeGeminiServer() as fake:
        fake.veo_script(VeoPlan.fail(after=1, code=3, message="prompt rejected"), VeoPlan.stall())
        request = await _request(tmp_path, "")
        env = _env(fake, IDLOCK_RENDER_VEO_TIMEOUT_S="2.0", IDLOCK_RENDER_FALLBACK_ON_TRANSIENT="false")
        async with running_service("render", tmp_path, **env) as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RenderVideo(request)
            assert (
                err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                and "prompt rejected" in err.value.details()
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RenderVideo(request)
            assert (
                err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
                and "can be resumed" in err.value.details()
            )
