"""The Veo provider drives the real google-genai client (long-running operations) against the fake server."""

from __future__ import annotations

import asyncio

import pytest

from idlock.errors import DeadlineExceeded, InvalidInput, PreconditionFailed, QuotaExceeded, Unavailable
from services.render.engine import Renderer
from services.render.models import MediaKind, RenderRequest
from services.render.providers.veo import VeoProvider
from services.render.settings import RenderSettings
from services.render.video import probe_video
from tests.fakes.gemini_server import VeoPlan


def _settings(fake, **kw) -> RenderSettings:
    base = {
        "gemini_api_key": "test-key",
        "gemini_base_url": fake.base_url,
        "backoff_base_s": 0.01,
        "backoff_max_s": 1.0,
        "timeout_s": 15.0,
        "max_retries": 2,
        "watermark": False,
        "veo_poll_interval_s": 0.02,
        "veo_timeout_s": 20.0,
    }
    base.update(kw)
    return RenderSettings(**base)


@pytest.fixture
async def veo(fake_gemini):
    p = VeoProvider(_settings(fake_gemini))
    yield p
    await p.aclose()


def _req(astronaut_png, **kw) -> RenderRequest:
    base = {
        "prompt": "the pilot walks along a beach at sunset",
        "references": [astronaut_png] * 4,
        "duration_s": 2.0,
        "aspect_ratio": "16:9",
        "seed": 7,
        "dialogue": "We land at dawn.",
        "media": MediaKind.VIDEO,
    }
    base.update(kw)
    return RenderRequest(**base)


async def test_success_speaks_the_long_running_protocol(veo, fake_gemini, astronaut_png):
    fake_gemini.veo_script(VeoPlan.finish(after=3))
    seen: list[tuple[str, int]] = []

    async def progress(op: str, polls: int) -> None:
        seen.append((op, polls))

    r = await veo.render_video(_req(astronaut_png), progress)
    assert fake_gemini.veo_creations == 1 and fake_gemini.veo_polls == 3
    create = next(q for q in fake_gemini.requests if q.path.endswith(":predictLongRunning"))
    assert create.model == "veo-3.1-generate-preview"
    instance, params = create.body["instances"][0], create.body["parameters"]
    assert "We land at dawn." in instance["prompt"]
    assert len(instance["referenceImages"]) == 3  # at most 3 asset references
    assert instance["referenceImages"][0]["referenceType"] == "ASSET"
    assert params["durationSeconds"] == 2 and params["aspectRatio"] == "16:9" and params["seed"] == 7
    assert r.provider == "veo" and r.label == "veo/veo-3.1-generate-preview"
    assert (
        r.operation_name.endswith(r.operation_name.rsplit("/", 1)[-1]) and "/operations/" in r.operation_name
    )
    assert r.polls == 3 and seen[0] == (r.operation_name, 0) and seen[-1] == (r.operation_name, 3)
    assert r.media == MediaKind.VIDEO and r.video_mime == "video/mp4"
    info = probe_video(r.video)
    assert info.frames >= 10 and r.duration_s > 1.0
    assert r.image[:4] == b"\x89PNG" and r.last_frame and r.last_frame[:4] == b"\x89PNG"
    assert any("first 3 of 4" in n for n in r.notes)


async def test_video_delivered_by_uri_is_downloaded(veo, fake_gemini, astronaut_png):
    fake_gemini.veo_script(VeoPlan.finish(after=1, by_uri=True))
    r = await veo.render_video(_req(astronaut_png, references=[astronaut_png]))
    downloads = [q for q in fake_gemini.requests if q.path.startswith("/download/")]
    assert len(downloads) == 1 and downloads[0].headers.get("x-goog-api-key") == "test-key"
    assert probe_video(r.video).frames > 0


async def test_failed_operation_maps_to_an_error(veo, fake_gemini, astronaut_png):
    fake_gemini.veo_script(VeoPlan.fail(after=2, code=13, message="backend exploded"))
    with pytest.raises(Unavailable, match="backend exploded") as ei:
        await veo.render_video(_req(astronaut_png))
    assert "/operations/" in ei.value.details["operation_name"]
    fake_gemini.veo_script(VeoPlan.fail(after=1, code=3, message="bad prompt"))
    with pytest.raises(InvalidInput, match="bad prompt"):
        await veo.render_video(_req(astronaut_png))
    fake_gemini.veo_script(VeoPlan.filtered())
    with pytest.raises(PreconditionFailed, match="safety"):
        await veo.render_video(_req(astronaut_png))


async def test_creation_is_retried_like_gemini_images(veo, fake_gemini, astronaut_png):
    fake_gemini.veo_script(VeoPlan.error(503), VeoPlan.error(429, retry_after=0.05), VeoPlan.finish(after=1))
    r = await veo.render_video(_req(astronaut_png, references=[astronaut_png]))
    assert r.attempts == 3 and fake_gemini.veo_creations == 1
    fake_gemini.veo_script(*[VeoPlan.error(429)] * 3)
    with pytest.raises(QuotaExceeded, match="gave up after 3 attempts"):
        await veo.render_video(_req(astronaut_png))


async def test_restarted_worker_resumes_the_same_operation(fake_gemini, astronaut_png):
    """The first worker dies mid-poll (its task is cancelled after storing the operation name); a fresh provider
    resumes that operation: the fake counts one creation and the video arrives."""
    fake_gemini.veo_script(VeoPlan.finish(after=6))
    first = VeoProvider(_settings(fake_gemini, veo_poll_interval_s=0.05))
    stored: dict[str, str] = {}
    polled = asyncio.Event()

    async def remember(op: str, polls: int) -> None:
        stored["op"] = op
        if polls >= 2:
            polled.set()

    task = asyncio.create_task(first.render_video(_req(astronaut_png), remember))
    await asyncio.wait_for(polled.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await first.aclose()

    second = VeoProvider(_settings(fake_gemini, veo_poll_interval_s=0.02))
    try:
        r = await second.render_video(_req(astronaut_png, operation_name=stored["op"]))
    finally:
        await second.aclose()
    assert fake_gemini.veo_creations == 1
    assert r.operation_name == stored["op"] and r.video and probe_video(r.video).frames > 0
    assert any("resumed" in n for n in r.notes)


async def test_stalled_operation_times_out_cleanly(fake_gemini, astronaut_png):
    fake_gemini.veo_script(VeoPlan.stall())
    veo = VeoProvider(_settings(fake_gemini, veo_poll_interval_s=0.05, veo_timeout_s=0.6))
    try:
        with pytest.raises(DeadlineExceeded, match="can be resumed") as ei:
            await veo.render_video(_req(astronaut_png))
    finally:
        await veo.aclose()
    assert ei.value.details["polls"] >= 1
    assert fake_gemini.veo_creations == 1


async def test_a_poll_cut_short_by_the_deadline_still_says_the_operation_can_be_resumed(
    fake_gemini, astronaut_png
):
    fake_gemini.veo_script(VeoPlan.stall())
    veo = VeoProvider(_settings(fake_gemini, veo_poll_interval_s=0.05, veo_timeout_s=2.0))

    async def oversleep(
        _interval: float,
    ) -> None:  # a busy machine: the wait between polls outlasts the deadline
        await asyncio.sleep(2.1)

    veo._sleep = oversleep  # type: ignore[method-assign]
    try:
        with pytest.raises(DeadlineExceeded, match="can be resumed") as ei:
            await veo.render_video(_req(astronaut_png))
    finally:
        await veo.aclose()
    assert ei.value.details["operation_name"] and fake_gemini.veo_creations == 1


async def test_renderer_falls_back_to_the_offline_clip_without_a_key(astronaut_png, tmp_path):
    renderer = Renderer.from_settings(RenderSettings(gemini_api_key="", watermark=False))
    try:
        r = await renderer.render_video(
            RenderRequest(
                prompt="a walk through the forest",
                references=[astronaut_png],
                duration_s=2.0,
                fps=8,
                media=MediaKind.VIDEO,
            )
        )
    finally:
        await renderer.aclose()
    assert r.provider == "compositor" and r.label == "offline/compositor" and r.fallback_used
    assert any(x.startswith("veo: no API key") for x in r.fallback_reasons)
    info = probe_video(r.video)
    assert info.frames == 16 and abs(r.duration_s - 2.0) < 1e-6
    assert (info.first != info.last).any()  # the face moves through the scene
