"""A paid render is made at most once per output: a save that fails (a full disk) keeps the rendered image and
the retry saves it; a render service that died mid-call is seen to repeat the paid call, and says so and costs
both. The render service runs for real, in process, against the fake Gemini server (the official client)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from idlock.errors import REASON_TRAILER
from idlock.v1 import render_service_pb2 as pb
from idlock.v1 import render_service_pb2_grpc as pb_grpc
from tests.fakes.gemini_server import FakeGeminiServer
from tests.harness import running_service, small_disk


def _env(fake: FakeGeminiServer, objects) -> dict[str, str]:
    return {
        "IDLOCK_RENDER_PROVIDERS": '["gemini"]',
        "IDLOCK_RENDER_GEMINI_API_KEY": "test",
        "IDLOCK_RENDER_GEMINI_BASE_URL": fake.base_url,
        "IDLOCK_STORAGE_LOCAL_ROOT": str(objects),
    }


def _reason(err: grpc.aio.AioRpcError) -> str:
    return dict(err.trailing_metadata() or ()).get(REASON_TRAILER, "")


async def test_a_full_disk_after_the_paid_call_is_retried_as_a_save_not_a_render(tmp_path) -> None:
    with FakeGeminiServer() as fake, small_disk(tmp_path / "objects", size_mb=8) as disk:
        fake.latency_s = 0.8
        async with running_service("render", tmp_path, **_env(fake, disk.path)) as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            request = pb.RenderImageRequest(
                prompt="a castle", seed=3, job_id="job_full", output_prefix="jobs/job_full/"
            )
            call = asyncio.ensure_future(stub.RenderImage(request))
            await asyncio.sleep(0.4)  # the paid call is under way (its count is stored): now the disk fills
            disk.fill()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE and _reason(err.value) == "storage_full"
            assert "object storage is full" in err.value.details()
            assert fake.calls == 1

            disk.free()
            done = await stub.RenderImage(request)
            assert done.image.uri.endswith("jobs/job_full/image.png")
            assert fake.calls == 1 and done.provenance.paid_calls == 1  # saved, not rendered again

            # a full disk *before* the paid call stops it there: nothing is paid for
            disk.fill()
            other = pb.RenderImageRequest(
                prompt="a bridge", seed=4, job_id="job_b", output_prefix="jobs/job_b/"
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.RenderImage(other)
            assert _reason(err.value) == "storage_full" and fake.calls == 1
            disk.free()


async def test_a_render_service_that_died_mid_call_reports_the_repeated_paid_call(tmp_path) -> None:
    with FakeGeminiServer() as fake:
        fake.latency_s = 1.5
        env = _env(fake, tmp_path / "objects")
        request = pb.RenderImageRequest(prompt="a tower", seed=5, job_id="job_d", output_prefix="jobs/job_d/")
        async with running_service("render", tmp_path, **env) as channel:
            call = asyncio.ensure_future(pb_grpc.RenderServiceStub(channel).RenderImage(request))
            await asyncio.sleep(0.5)
        # the service is gone mid-call (stopped without draining): the provider got the request all the same
        with pytest.raises((grpc.aio.AioRpcError, asyncio.CancelledError)):
            await call
        assert fake.calls == 1
        fake.latency_s = 0.0
        async with running_service("render", tmp_path, **env) as channel:
            done = await pb_grpc.RenderServiceStub(channel).RenderImage(request)
        prov = done.provenance
        assert fake.calls == 2 and prov.paid_calls == 2
        assert prov.estimated_cost_usd == pytest.approx(2 * 0.039)
        assert any(r.startswith("paid call repeated: 2 calls to gemini") for r in prov.fallback_reasons)
