"""The gemini provider drives the real google-genai client against the local fake Gemini server."""

from __future__ import annotations

import io
import time

import pytest
from PIL import Image

from idlock.errors import (
    ContentBlocked,
    DeadlineExceeded,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
    Unavailable,
)
from services.render.engine import Renderer
from services.render.models import EditRequest, RenderRequest
from services.render.providers.gemini import GeminiProvider, parse_retry_after
from services.render.settings import RenderSettings
from tests.fakes.gemini_server import Reply, default_image
from tests.metrics_probe import metrics_change

BACKOFF = 0.01


def _settings(fake, **kw) -> RenderSettings:
    base = {
        "gemini_api_key": "test-key",
        "gemini_base_url": fake.base_url,
        "backoff_base_s": BACKOFF,
        "backoff_max_s": 1.0,
        "timeout_s": 2.0,
        "max_retries": 2,
        "watermark": False,
    }
    base.update(kw)
    return RenderSettings(**base)


@pytest.fixture
async def gemini(fake_gemini):
    p = GeminiProvider(_settings(fake_gemini))
    yield p
    await p.aclose()


def _png(colour=(200, 10, 10), size=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


async def test_success_sends_prompt_and_references(gemini, fake_gemini, astronaut_png):
    pose = _png((0, 0, 255))
    r = await gemini.render(
        RenderRequest(
            prompt="a pilot on the moon",
            negative_prompt="blurry",
            references=[astronaut_png, _png()],
            pose_image=pose,
            seed=7,
            width=1024,
            height=576,
        )
    )
    assert fake_gemini.calls == 1 and r.attempts == 1
    req = fake_gemini.requests[0]
    assert req.path == "/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert req.headers["x-goog-api-key"] == "test-key"
    assert req.texts[0] == "a pilot on the moon\nAvoid: blurry"
    assert req.images == [astronaut_png, _png(), pose]
    assert req.image_mimes == ["image/png"] * 3
    assert req.generation_config["seed"] == 7
    assert req.generation_config["responseModalities"] == ["IMAGE"]
    assert req.generation_config["imageConfig"] == {"aspectRatio": "16:9"}
    assert r.image == default_image(" ".join(req.texts))
    assert (r.provider, r.model, r.label) == (
        "gemini",
        "gemini-2.5-flash-image",
        "gemini/gemini-2.5-flash-image",
    )
    assert r.estimated_cost_usd == pytest.approx(0.039)
    assert r.fallback_used is False and r.seed == 7


async def test_model_is_configurable(fake_gemini):
    p = GeminiProvider(_settings(fake_gemini, gemini_model="gemini-3-pro-image-preview"))
    r = await p.render(RenderRequest(prompt="x"))
    await p.aclose()
    assert (
        fake_gemini.requests[0].model == "gemini-3-pro-image-preview"
        and r.model == "gemini-3-pro-image-preview"
    )


async def test_jpeg_answer_is_converted_to_png(gemini, fake_gemini):
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (1, 2, 3)).save(buf, "JPEG")
    fake_gemini.image = buf.getvalue()
    r = await gemini.render(RenderRequest(prompt="x"))
    assert r.image[:4] == b"\x89PNG" and (r.width, r.height) == (40, 30)


@pytest.mark.parametrize("status", [429, 500, 503, 504])
async def test_retryable_then_success(gemini, fake_gemini, status):
    fake_gemini.script(Reply.error(status), Reply.error(status))
    t0 = time.monotonic()
    r = await gemini.render(RenderRequest(prompt="x"))
    assert fake_gemini.calls == 3 and r.attempts == 3
    assert time.monotonic() - t0 < 1.5  # tiny backoff: no real waiting


@pytest.mark.parametrize(
    "status, error",
    [(429, QuotaExceeded), (500, Unavailable), (503, Unavailable), (504, DeadlineExceeded)],
)
async def test_retryable_gives_up_after_limit(gemini, fake_gemini, status, error):
    fake_gemini.default = Reply.error(status)
    with pytest.raises(error, match=rf"{status}.*gave up after 3 attempts") as ei:
        await gemini.render(RenderRequest(prompt="x"))
    assert fake_gemini.calls == 3  # 1 + max_retries, the client's own retries are off
    assert ei.value.details["attempts"] == 3 and ei.value.details["http_status"] == status


async def test_max_retries_setting(fake_gemini):
    fake_gemini.default = Reply.error(503)
    p = GeminiProvider(_settings(fake_gemini, max_retries=0))
    with pytest.raises(Unavailable):
        await p.render(RenderRequest(prompt="x"))
    await p.aclose()
    assert fake_gemini.calls == 1


async def test_retry_after_is_honoured(gemini, fake_gemini):
    fake_gemini.script(Reply.error(429, retry_after=0.3))
    t0 = time.monotonic()
    r = await gemini.render(RenderRequest(prompt="x"))
    elapsed = time.monotonic() - t0
    assert r.attempts == 2 and fake_gemini.calls == 2
    gap = fake_gemini.requests[1].at - fake_gemini.requests[0].at
    assert gap >= 0.3 and elapsed >= 0.3
    assert elapsed < 2.0


@pytest.mark.parametrize(
    "status, error, words",
    [
        (400, InvalidInput, "invalid argument"),
        (403, PermissionDenied, "Permission denied"),
        (404, NotFound, "not found"),
        (401, PermissionDenied, "API key not valid"),
    ],
)
async def test_non_retryable_errors_one_attempt(gemini, fake_gemini, status, error, words):
    fake_gemini.default = Reply.error(status)
    with pytest.raises(error, match=words):
        await gemini.render(RenderRequest(prompt="x"))
    assert fake_gemini.calls == 1


async def test_provider_message_is_passed_on(gemini, fake_gemini):
    fake_gemini.script(Reply.error(400, message="Image input is too large: 21 MB"))
    with pytest.raises(InvalidInput, match="Image input is too large: 21 MB"):
        await gemini.render(RenderRequest(prompt="x"))


@pytest.mark.parametrize(
    "reply, words",
    [
        (Reply.prompt_blocked("SAFETY"), "blocked the prompt: SAFETY"),
        (Reply.prompt_blocked("PROHIBITED_CONTENT"), "PROHIBITED_CONTENT"),
        (Reply.finish_blocked("IMAGE_SAFETY"), "finishReason IMAGE_SAFETY"),
        (Reply.finish_blocked("SAFETY"), "finishReason SAFETY"),
    ],
)
async def test_safety_block_is_content_blocked(gemini, fake_gemini, reply, words):
    fake_gemini.script(reply)
    with pytest.raises(ContentBlocked, match=words) as err:
        await gemini.render(RenderRequest(prompt="x"))
    assert (
        isinstance(err.value, PreconditionFailed) and err.value.reason == "moderated"
    )  # a job ends moderated
    assert fake_gemini.calls == 1


@pytest.mark.parametrize(
    "reply, words",
    [
        (Reply.malformed(), "malformed response"),
        (Reply.malformed(b"<html>proxy error</html>"), "malformed response"),
        (Reply.bad_image(), "cannot be decoded"),
        (Reply.no_image(), "no image"),
        (Reply.text_only("I cannot draw people."), "I cannot draw people"),
    ],
)
async def test_malformed_responses_are_unavailable(gemini, fake_gemini, reply, words):
    fake_gemini.script(reply)
    with pytest.raises(Unavailable, match=words):
        await gemini.render(RenderRequest(prompt="x"))
    assert fake_gemini.calls == 1


async def test_timeout_is_deadline_exceeded(fake_gemini):
    p = GeminiProvider(_settings(fake_gemini, timeout_s=0.4))
    fake_gemini.script(Reply.hang(10))
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="no answer within 0.40s"):
        await p.render(RenderRequest(prompt="x"))
    await p.aclose()
    assert 0.35 <= time.monotonic() - t0 < 2.0
    assert fake_gemini.calls == 1


async def test_request_deadline_caps_the_call(gemini, fake_gemini):
    fake_gemini.script(Reply.hang(10))
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await gemini.render(RenderRequest(prompt="x", deadline_s=0.3))
    assert time.monotonic() - t0 < 1.5


async def test_unreachable_server_is_unavailable_after_retries(fake_gemini):
    s = _settings(fake_gemini, gemini_base_url="http://127.0.0.1:9")  # discard port: connection refused
    p = GeminiProvider(s)
    with pytest.raises(Unavailable, match="cannot reach"):
        await p.render(RenderRequest(prompt="x"))
    await p.aclose()


async def test_bad_reference_rejected_before_any_call(gemini, fake_gemini):
    with pytest.raises(InvalidInput, match="reference image 0"):
        await gemini.render(RenderRequest(prompt="x", references=[b"junk"]))
    assert fake_gemini.calls == 0


async def test_edit_sends_image_mask_and_references(gemini, fake_gemini):
    img, mask, ref = _png((1, 1, 1), (64, 48)), _png((255, 255, 255)), _png((9, 9, 9))
    r = await gemini.edit(EditRequest(image=img, mask=mask, references=[ref], prompt="fix the face", seed=3))
    req = fake_gemini.requests[0]
    assert req.images == [img, mask, ref]
    assert "white in the mask" in req.texts[0]
    assert req.generation_config["imageConfig"] == {"aspectRatio": "4:3"}
    assert r.provider == "gemini"


def test_parse_retry_after():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.3") == 0.3
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") <= 0.001


# --- through the provider chain -------------------------------------------------------------------------------
async def test_chain_uses_gemini_and_watermarks(fake_gemini):
    from idlock.provenance import read_image_mark

    r = Renderer(_settings(fake_gemini, watermark=True, providers=["gemini", "compositor"]))
    res = await r.render(RenderRequest(prompt="x", job_id="job-1"))
    await r.aclose()
    assert res.provider == "gemini" and not res.fallback_used and res.watermarked
    assert read_image_mark(res.image)["job_id"] == "job-1"


async def test_chain_falls_back_to_compositor_on_transient_failure(fake_gemini):
    fake_gemini.default = Reply.error(503)
    r = Renderer(_settings(fake_gemini, providers=["gemini", "compositor"]))
    res = await r.render(RenderRequest(prompt="x", width=128, height=128, seed=1))
    await r.aclose()
    assert res.provider == "compositor" and res.label == "offline/compositor"
    assert res.fallback_used and len(res.fallback_reasons) == 1
    assert (
        res.fallback_reasons[0].startswith("gemini: gemini: 503") and "3 attempts" in res.fallback_reasons[0]
    )
    assert fake_gemini.calls == 3


async def test_chain_never_falls_back_on_safety_or_bad_input(fake_gemini):
    r = Renderer(_settings(fake_gemini, providers=["gemini", "compositor"]))
    fake_gemini.script(Reply.prompt_blocked())
    with pytest.raises(PreconditionFailed):
        await r.render(RenderRequest(prompt="x"))
    fake_gemini.script(Reply.error(400))
    with pytest.raises(InvalidInput):
        await r.render(RenderRequest(prompt="x"))
    await r.aclose()


async def test_retry_after_longer_than_allowed_fails_at_once(fake_gemini):
    p = GeminiProvider(_settings(fake_gemini, backoff_max_s=0.2))
    fake_gemini.script(Reply.error(429, retry_after=5))
    t0 = time.monotonic()
    with pytest.raises(QuotaExceeded, match="retry after 5s"):
        await p.render(RenderRequest(prompt="x"))
    await p.aclose()
    assert fake_gemini.calls == 1 and time.monotonic() - t0 < 1.0


async def test_deadline_too_short_for_backoff(fake_gemini):
    p = GeminiProvider(_settings(fake_gemini, backoff_base_s=5.0, backoff_max_s=5.0))
    fake_gemini.default = Reply.error(503)
    with pytest.raises(Unavailable, match="no time left before the deadline"):
        await p.render(RenderRequest(prompt="x", deadline_s=1.0))
    await p.aclose()
    assert fake_gemini.calls == 1


# --- metrics ----------------------------------------------------------------------------------------------------
async def test_provider_calls_retries_errors_and_fallbacks_are_exported(fake_gemini):
    model = _settings(fake_gemini).gemini_model
    r = Renderer(_settings(fake_gemini, providers=["gemini", "compositor"]))
    with metrics_change() as grew:
        fake_gemini.script(Reply.error(429))  # one retry, then an image
        await r.render(RenderRequest(prompt="x", width=64, height=64))
        fake_gemini.default = Reply.error(503)  # three tries, then the compositor
        await r.render(RenderRequest(prompt="x", width=128, height=128, seed=1))
    await r.aclose()
    assert grew("idlock_provider_seconds_count", provider="gemini", model=model, op="render") == 2
    assert grew("idlock_provider_seconds_count", provider="compositor", op="render") == 1
    assert grew("idlock_provider_retries_total", provider="gemini", model=model) == 1 + 2
    assert grew("idlock_provider_errors_total", provider="gemini", model=model, code="unavailable") == 1
    assert grew("idlock_provider_fallbacks_total", provider="gemini") == 1
    assert grew("idlock_provider_errors_total", provider="compositor") == 0
