"""Provider chain: order, skipping unavailable providers, fallback on transient failures, watermark."""

from __future__ import annotations

import pytest

from idlock.errors import DeadlineExceeded, InvalidInput, PermissionDenied, Unavailable
from idlock.provenance import DIGITAL_SOURCE_TYPE, read_image_mark
from services.render.engine import Renderer
from services.render.models import EditRequest, MediaKind, RenderRequest, RenderResult
from services.render.providers.base import RenderProvider
from services.render.providers.compositor import CompositorProvider
from services.render.settings import RenderSettings


class Stub(RenderProvider):
    def __init__(self, name, *, unavailable=None, error=None):
        self.name = name
        self._unavailable = unavailable
        self._error = error
        self.calls = 0

    def unavailable_reason(self):
        return self._unavailable

    async def render(self, req):
        self.calls += 1
        if self._error:
            raise self._error
        from services.render.providers.compositor import CompositorProvider

        r = CompositorProvider().render_sync(RenderRequest(prompt=req.prompt, width=64, height=64, seed=1))
        return RenderResult(
            image=r.image, provider=self.name, model="stub", seed=req.seed, width=64, height=64
        )


def _settings(**kw):
    return RenderSettings(**{"watermark": False, **kw})


async def test_default_settings_without_keys_fall_back_to_compositor(monkeypatch):
    for k in (
        "IDLOCK_RENDER_GEMINI_API_KEY",
        "IDLOCK_RENDER_DIFFUSERS_MODEL_PATH",
        "IDLOCK_RENDER_PROVIDERS",
    ):
        monkeypatch.delenv(k, raising=False)
    r = Renderer.from_settings(RenderSettings(watermark=True))
    assert r.status() == {
        "gemini": "no API key (IDLOCK_RENDER_GEMINI_API_KEY is empty)",
        "diffusers": "no model path (IDLOCK_RENDER_DIFFUSERS_MODEL_PATH is empty)",
        "compositor": None,
    }
    res = await r.render(
        RenderRequest(prompt="a castle at night", width=128, height=128, seed=4, job_id="j-9")
    )
    assert res.provider == "compositor" and res.label == "offline/compositor"
    assert res.fallback_used is True
    assert res.fallback_reasons == [
        "gemini: no API key (IDLOCK_RENDER_GEMINI_API_KEY is empty)",
        "diffusers: no model path (IDLOCK_RENDER_DIFFUSERS_MODEL_PATH is empty)",
    ]
    assert res.watermarked and read_image_mark(res.image) == {
        "generator": "IDLock",
        "ai_generated": True,
        "digital_source_type": DIGITAL_SOURCE_TYPE,
        "job_id": "j-9",
        "provider": "compositor",
        "label": "offline/compositor",
        "xmp_digital_source_type": DIGITAL_SOURCE_TYPE,
    }
    assert res.estimated_cost_usd == 0.0 and res.latency_s > 0
    await r.aclose()


async def test_first_available_wins_without_fallback():
    a = Stub("gemini")
    r = Renderer(_settings(), {"gemini": a, "compositor": Stub("compositor")})
    res = await r.render(RenderRequest(prompt="x", seed=3))
    assert res.provider == "gemini" and not res.fallback_used and res.fallback_reasons == []
    assert res.estimated_cost_usd == pytest.approx(0.039)  # from the cost table


async def test_transient_failure_falls_back_with_reason():
    g, c = Stub("gemini", error=Unavailable("gemini: 503 overloaded")), Stub("compositor")
    r = Renderer(_settings(providers=["gemini", "compositor"]), {"gemini": g, "compositor": c})
    res = await r.render(RenderRequest(prompt="x"))
    assert res.provider == "compositor" and res.fallback_reasons == ["gemini: gemini: 503 overloaded"]
    assert g.calls == 1 and c.calls == 1


async def test_transient_failure_without_fallback_raises():
    g = Stub("gemini", error=Unavailable("503"))
    r = Renderer(_settings(fallback_on_transient=False), {"gemini": g, "compositor": Stub("compositor")})
    with pytest.raises(Unavailable):
        await r.render(RenderRequest(prompt="x"))


async def test_permission_error_does_not_fall_back():
    c = Stub("compositor")
    r = Renderer(_settings(), {"gemini": Stub("gemini", error=PermissionDenied("bad key")), "compositor": c})
    with pytest.raises(PermissionDenied):
        await r.render(RenderRequest(prompt="x"))
    assert c.calls == 0


async def test_all_failing_reports_every_reason():
    r = Renderer(
        _settings(providers=["gemini", "compositor"]),
        {
            "gemini": Stub("gemini", unavailable="no API key"),
            "compositor": Stub("compositor", error=DeadlineExceeded("too slow")),
        },
    )
    with pytest.raises(DeadlineExceeded, match="gemini: no API key; compositor: too slow"):
        await r.render(RenderRequest(prompt="x"))


async def test_nothing_available_is_unavailable():
    r = Renderer(_settings(providers=["gemini"]), {"gemini": Stub("gemini", unavailable="no API key")})
    with pytest.raises(Unavailable, match="no render provider available: gemini: no API key"):
        await r.render(RenderRequest(prompt="x"))


async def test_request_preference_overrides_settings_order():
    g, c = Stub("gemini"), Stub("compositor")
    r = Renderer(_settings(), {"gemini": g, "compositor": c})
    res = await r.render(RenderRequest(prompt="x", providers=["compositor", "gemini"]))
    assert res.provider == "compositor" and g.calls == 0
    with pytest.raises(InvalidInput, match="midjourney"):
        await r.render(RenderRequest(prompt="x", providers=["midjourney"]))


async def test_watermark_per_request_override_leaves_the_metadata_mark():
    r = Renderer(_settings(watermark=True), {"compositor": Stub("compositor")})
    res = await r.render(RenderRequest(prompt="x", providers=["compositor"], watermark=False, job_id="j-1"))
    # no visible mark, but the file still says it was made by AI
    assert not res.watermarked
    mark = read_image_mark(res.image)
    assert mark["ai_generated"] and mark["job_id"] == "j-1"
    assert mark["xmp_digital_source_type"] == DIGITAL_SOURCE_TYPE


async def test_the_mark_is_drawn_off_the_loop_at_the_model_priority(monkeypatch):
    import threading

    from services.render import engine

    drawn_on: list[str] = []
    real = engine.apply_watermark

    def spy(*args, **kwargs):
        drawn_on.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "apply_watermark", spy)
    r = Renderer(_settings(watermark=True, model_thread_priority="idle"), {"compositor": Stub("compositor")})
    res = await r.render(RenderRequest(prompt="x", providers=["compositor"], job_id="j-2"))
    # decoding and encoding the image would hold the service's loop for tens of ms
    assert res.watermarked and len(drawn_on) == 1 and drawn_on[0].startswith("watermark"), drawn_on
    await r.aclose()


async def test_video_needs_a_provider_that_renders_video():
    r = Renderer(_settings(video_providers=["compositor"]), {"compositor": Stub("compositor")})
    with pytest.raises(Unavailable, match="does not render videos"):
        await r.render(RenderRequest(prompt="x", media=MediaKind.VIDEO, duration_s=4))
    with pytest.raises(InvalidInput, match="renders video"):
        await r.render_video(RenderRequest(prompt="x", providers=["diffusers"], duration_s=4))


async def test_edit_skips_providers_without_edit_support(astronaut_png):
    r = Renderer(
        _settings(providers=["gemini", "compositor"]),
        {"gemini": Stub("gemini"), "compositor": CompositorProvider()},
    )
    scene = await r.render(
        RenderRequest(
            prompt="forest",
            providers=["compositor"],
            references=[astronaut_png],
            seed=2,
            width=256,
            height=256,
        )
    )
    res = await r.edit(EditRequest(image=scene.image, prompt="fix", references=[astronaut_png], seed=2))
    assert res.provider == "compositor"
    assert res.fallback_reasons == ["gemini: provider gemini does not support edits"]


async def test_every_clip_carries_the_manifest_and_frames_are_stamped_as_set(astronaut_png):
    import numpy as np

    from idlock.provenance import read_video_mark
    from services.render.video import probe_video

    clips = {}
    for frames in (False, True):
        settings = _settings(video_providers=["compositor"], watermark_video_frames=frames)
        r = Renderer(settings, {"compositor": CompositorProvider()})
        req = RenderRequest(
            prompt="a ride at dusk", references=[astronaut_png], seed=3, duration_s=1, job_id="v-9"
        )
        res = await r.render_video(req)
        mark = read_video_mark(res.video)
        assert mark is not None and mark["job_id"] == "v-9" and mark["ai_generated"]
        assert read_image_mark(res.image)["job_id"] == "v-9"  # the poster too
        clips[frames] = probe_video(res.video).last.astype(int)
    # the same scene, stamped only in the bottom-right corner
    changed = np.abs(clips[True] - clips[False]).sum(axis=2) > 60
    ys, xs = np.nonzero(changed)
    h, w = changed.shape
    assert len(ys) > 0 and ys.min() > h * 0.6 and xs.min() > w * 0.4
