"""Validation: the decision follows the IDR comparison (controlled scores), and the end-to-end path renders the
test scenes with and without the LoRA through the diffusers provider (tiny pipeline: no faces, IDR 0)."""

from __future__ import annotations

import pytest

from idlock.errors import InvalidInput
from services.trainer.validation import decide, diffusers_renderer, validate


@pytest.mark.parametrize(
    ("new", "base", "margin", "approved"),
    [
        (0.80, 0.70, 0.02, True),
        (0.71, 0.70, 0.02, False),  # better, but not by the margin
        (0.72, 0.70, 0.02, True),  # exactly the margin
        (0.70, 0.70, 0.0, False),  # a tie never wins
        (0.60, 0.70, 0.0, False),
        (0.01, 0.0, 0.0, True),
    ],
)
def test_decision(new, base, margin, approved) -> None:
    d = decide(new, base, margin)
    assert d.approved is approved
    assert f"{new:.3f}" in d.reason and f"{base:.3f}" in d.reason


def _fake_render(prompt: str, seed: int, lora: str | None) -> bytes:
    return f"{lora or 'none'}|{prompt}|{seed}".encode()


def test_validate_compares_mean_idr_with_the_same_scenes_and_seeds() -> None:
    idr = {"new.safetensors": 0.9, "active.safetensors": 0.8}
    calls: list[tuple[str, int, str | None]] = []

    def render(prompt, seed, lora):
        calls.append((prompt, seed, lora))
        return _fake_render(prompt, seed, lora)

    def score(image: bytes) -> float | None:
        lora = image.decode().split("|")[0]
        return idr.get(lora)

    report = validate(
        render,
        score,
        ["s1", "s2"],
        [1, 2],
        "new.safetensors",
        baseline_lora="active.safetensors",
        margin=0.05,
        baseline_label="lora_c_v1",
    )
    assert (
        report.approved and report.new_idr == pytest.approx(0.9) and report.baseline_idr == pytest.approx(0.8)
    )
    assert len(report.scenes) == 4
    new_calls = [(p, s) for p, s, lora in calls if lora == "new.safetensors"]
    base_calls = [(p, s) for p, s, lora in calls if lora == "active.safetensors"]
    assert new_calls == base_calls  # same scenes, same seeds

    # against no LoRA, where no face is found: that render scores 0
    report = validate(render, score, ["s1"], [1], "new.safetensors", margin=0.5)
    assert (
        report.baseline_idr == 0.0 and report.approved and report.metrics()["validation_faces_baseline"] == 0
    )
    # the new LoRA is worse: rejected
    idr["new.safetensors"] = 0.5
    report = validate(render, score, ["s1"], [1], "new.safetensors", baseline_lora="active.safetensors")
    assert not report.approved and "does not beat" in report.reason
    with pytest.raises(InvalidInput):
        validate(render, score, [], [1], "new.safetensors")


def test_end_to_end_validation_on_the_tiny_pipeline(tiny_model, tmp_path) -> None:
    from tests.fakes.tiny_diffusers import build_tiny_lora

    lora = build_tiny_lora(tiny_model, tmp_path / "lora")
    render = diffusers_renderer(str(tiny_model), steps=2, size=32, device="cpu")
    seen: dict[str | None, bytes] = {}

    def render_and_keep(prompt, seed, lora_path):
        seen[lora_path] = render(prompt, seed, lora_path)
        return seen[lora_path]

    def no_face(_image: bytes) -> float | None:
        return None  # random tiny pipelines draw noise: no face, IDR 0

    report = validate(render_and_keep, no_face, ["a photo of zq person"], [3], str(lora), margin=0.0)
    assert not report.approved and report.new_idr == report.baseline_idr == 0.0
    assert seen[str(lora)] != seen[None]  # the LoRA was applied to one render and not the other
