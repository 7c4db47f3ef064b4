"""Local diffusers provider on a tiny randomly initialised SD pipeline (built offline, 32 px, 2 steps, CPU)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("diffusers")
pytest.importorskip("peft")

from idlock.errors import InvalidInput, NotFound
from services.render.engine import Renderer
from services.render.models import EditRequest, RenderRequest
from services.render.providers.diffusers_local import DiffusersProvider
from services.render.settings import RenderSettings
from tests.fakes.tiny_diffusers import build_tiny_lora, build_tiny_sd


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_sd")
    model = build_tiny_sd(root / "model")
    lora = build_tiny_lora(model, root / "lora")
    return model, lora


@pytest.fixture(scope="module")
def provider(tiny):
    s = RenderSettings(
        diffusers_model_path=tiny[0],
        diffusers_steps=2,
        diffusers_device="cpu",
        diffusers_default_size=32,
        watermark=False,
    )
    return DiffusersProvider(s)


def _arr(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def _req(**kw) -> RenderRequest:
    return RenderRequest(prompt="a knight in the forest", width=32, height=32, **kw)


def test_renders_and_same_seed_repeats(provider):
    a = provider.render_sync(_req(seed=1))
    b = provider.render_sync(_req(seed=1))
    c = provider.render_sync(_req(seed=2))
    assert a.provider == "diffusers" and (a.width, a.height) == (32, 32) and a.seed == 1
    assert a.image == b.image
    assert a.image != c.image
    assert a.model.startswith("StableDiffusionPipeline")


def test_lora_changes_output_and_repeats(provider, tiny):
    lora = str(tiny[1])
    plain = provider.render_sync(_req(seed=5))
    with_lora = provider.render_sync(_req(seed=5, lora_path=lora, lora_scale=1.0))
    again = provider.render_sync(_req(seed=5, lora_path=lora, lora_scale=1.0))
    half = provider.render_sync(_req(seed=5, lora_path=lora, lora_scale=0.3))
    plain_after = provider.render_sync(_req(seed=5))  # adapter disabled again
    assert np.abs(_arr(plain.image) - _arr(with_lora.image)).mean() > 1.0
    assert with_lora.image == again.image
    assert half.image not in (plain.image, with_lora.image)
    assert plain_after.image == plain.image
    assert "lora:pytorch_lora_weights.safetensors" in with_lora.label
    # a folder holding pytorch_lora_weights.safetensors works too
    folder = provider.render_sync(_req(seed=5, lora_path=str(tiny[1].parent)))
    assert folder.image == with_lora.image


def test_a_forgotten_lora_is_unloaded(provider, tiny):
    lora = str(tiny[1])
    plain = provider.render_sync(_req(seed=7))
    with_lora = provider.render_sync(_req(seed=7, lora_path=lora))
    pipe = provider.pipeline
    name = pipe._adapters[str(tiny[1].resolve())]
    assert name in pipe.load().get_list_adapters()["unet"]
    assert pipe.forget_lora(lora) and not pipe.forget_lora(lora)
    assert str(tiny[1].resolve()) not in pipe._adapters
    assert name not in pipe.load().get_list_adapters().get("unet", [])
    assert provider.render_sync(_req(seed=7)).image == plain.image
    assert provider.render_sync(_req(seed=7, lora_path=lora)).image == with_lora.image  # loaded again


async def test_the_render_service_unloads_the_adapter_of_a_swept_lora(tiny, tmp_path, monkeypatch):
    from services.render.rendering import Rendering

    monkeypatch.setenv("IDLOCK_DATA_DIR", str(tmp_path))
    settings = RenderSettings(
        providers=["compositor"],  # diffusers only when a request names it
        diffusers_model_path=tiny[0],
        diffusers_steps=2,
        diffusers_device="cpu",
        diffusers_default_size=32,
        watermark=False,
    )
    rendering = Rendering(settings)
    await rendering._forget_adapter(str(tiny[1]))  # no diffusers pipeline made yet: nothing to unload
    provider = rendering.renderer.provider("diffusers")
    provider.render_sync(_req(seed=3, lora_path=str(tiny[1])))
    assert provider.pipeline._adapters
    await rendering._forget_adapter(str(tiny[1]))
    assert not provider.pipeline._adapters


def test_missing_or_bad_lora(provider, tmp_path):
    with pytest.raises(NotFound, match="LoRA adapter not found"):
        provider.render_sync(_req(seed=1, lora_path=str(tmp_path / "nope.safetensors")))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(InvalidInput, match="cannot be loaded"):
        provider.render_sync(_req(seed=1, lora_path=str(bad)))
    assert provider.render_sync(_req(seed=1)).image  # still usable


def test_img2img_and_inpaint(provider):
    src = provider.render_sync(_req(seed=3)).image
    a = provider.edit_sync(EditRequest(image=src, prompt="night", seed=9, strength=0.6))
    b = provider.edit_sync(EditRequest(image=src, prompt="night", seed=9, strength=0.6))
    assert a.image == b.image and a.label.endswith(":img2img") and (a.width, a.height) == (32, 32)
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (8, 8, 24, 24))
    buf = io.BytesIO()
    mask.save(buf, "PNG")
    c = provider.edit_sync(EditRequest(image=src, mask=buf.getvalue(), prompt="night", seed=9))
    assert c.label.endswith(":inpaint") and c.image != a.image


def test_unavailable_reasons(tmp_path):
    assert "empty" in DiffusersProvider(RenderSettings()).unavailable_reason()
    p = DiffusersProvider(RenderSettings(diffusers_model_path=tmp_path))
    assert "model_index.json" in p.unavailable_reason()


async def test_through_the_chain(provider, tiny):
    s = RenderSettings(
        providers=["gemini", "diffusers", "compositor"],
        diffusers_model_path=tiny[0],
        diffusers_steps=2,
        diffusers_device="cpu",
        watermark=True,
    )
    r = Renderer(s, {"diffusers": provider})
    res = await r.render(_req(seed=1, job_id="j"))
    assert res.provider == "diffusers" and res.fallback_used
    assert res.fallback_reasons[0].startswith("gemini: no API key") and res.watermarked
