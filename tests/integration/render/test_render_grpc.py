"""The render service over gRPC (real server on port 0): the compositor renders offline from stored refs, the
result is stored and labelled; bad input and not-yet-available RPCs get clear status codes."""

from __future__ import annotations

import grpc
import pytest
from skimage import data as skdata

from idlock import refs
from idlock.images import decode_image, encode_png
from idlock.provenance import read_image_mark
from idlock.settings import StorageSettings
from idlock.storage import open_store
from idlock.v1 import common_pb2
from idlock.v1 import render_service_pb2 as pb
from idlock.v1 import render_service_pb2_grpc as pb_grpc
from tests.harness import running_service

OFFLINE = {"IDLOCK_RENDER_PROVIDERS": '["gemini","compositor"]', "IDLOCK_RENDER_GEMINI_API_KEY": ""}


async def test_compositor_render_through_the_service(tmp_path) -> None:
    store = await open_store(StorageSettings(), tmp_path)
    face = skdata.astronaut()
    ref = await refs.put_image(store, "characters/c1/ref_0.png", encode_png(face), width=512, height=512)
    async with running_service("render", tmp_path, **OFFLINE) as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        request = pb.RenderImageRequest(
            prompt="Arya fights a dragon on a cliff at sunset",
            references=[ref],
            seed=7,
            job_id="job_1",
            width=768,
            height=768,
            watermark=True,
        )
        first = await stub.RenderImage(request)
        again = await stub.RenderImage(request)
        prov = first.provenance
        assert prov.provider == "compositor" and prov.label == "offline/compositor"
        assert prov.fallback_used and any(r.startswith("gemini:") for r in prov.fallback_reasons)
        assert first.image.uri.endswith("renders/job_1/image.png")
        stored = await store.get(first.image.uri)
        img = decode_image(stored)
        assert (img.width, img.height) == (first.image.width, first.image.height) == (768, 768)
        assert first.image.sha256 == again.image.sha256  # same seed, same scene
        mark = read_image_mark(stored)
        assert mark is not None and mark["job_id"] == "job_1" and mark["generator"] == "IDLock"

        providers = await stub.ListProviders(pb.ListProvidersRequest())
        status = {p.name: p for p in providers.providers}
        assert status["compositor"].available and not status["gemini"].available and status["gemini"].reason


async def test_bad_render_requests(tmp_path) -> None:
    async with running_service("render", tmp_path, **OFFLINE) as channel:
        stub = pb_grpc.RenderServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RenderImage(pb.RenderImageRequest(prompt="   "))
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "prompt is empty" in err.value.details()
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RenderImage(pb.RenderImageRequest(prompt="x", providers=["dall-e"]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "dall-e" in err.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            missing = common_pb2.ImageRef(uri=f"file://{tmp_path}/objects/nope.png")
            await stub.RenderImage(pb.RenderImageRequest(prompt="x", references=[missing]))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RenderVideo(pb.RenderVideoRequest(prompt=" "))
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "prompt is empty" in err.value.details()
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.RenderVideo(pb.RenderVideoRequest(prompt="x", providers=["diffusers"]))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "renders video" in err.value.details()


async def test_render_is_idempotent_per_job_even_when_the_caller_dies(tmp_path) -> None:
    import asyncio

    from tests.fakes.gemini_server import FakeGeminiServer

    with FakeGeminiServer() as fake:
        fake.latency_s = 1.0
        env = {
            "IDLOCK_RENDER_PROVIDERS": '["gemini"]',
            "IDLOCK_RENDER_GEMINI_API_KEY": "test",
            "IDLOCK_RENDER_GEMINI_BASE_URL": fake.base_url,
        }
        async with running_service("render", tmp_path, **env) as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            request = pb.RenderImageRequest(
                prompt="a castle", seed=3, job_id="job_x", output_prefix="jobs/job_x/"
            )

            # a worker that dies mid-render: its call is cut off by a short deadline
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RenderImage(request, timeout=0.3)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # the redelivered job asks again, twice at once: both join the render that is still running
            first, second = await asyncio.gather(stub.RenderImage(request), stub.RenderImage(request))
            assert first.image.uri == second.image.uri and first.image.uri.endswith("jobs/job_x/image.png")
            assert fake.calls == 1

            replay = await stub.RenderImage(request)
            assert replay == first and fake.calls == 1

            changed = pb.RenderImageRequest(
                prompt="a castle at night", seed=3, job_id="job_x", output_prefix="jobs/job_x/"
            )
            await stub.RenderImage(changed)
            assert fake.calls == 2  # a different request for the job is a new render
