"""LoRA validation (seed task 2.6): render the same test scenes with the same seeds with and without the new
LoRA, score each render's calibrated IDR against the character, compare the means.

Approve only when the new LoRA beats the baseline (the character's active LoRA, or no LoRA) by at least
`margin`; otherwise reject. A render in which no face is found scores 0. Rendering and scoring are injected
(plain functions) so the decision is testable with controlled IDRs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from idlock.errors import InvalidInput

#: render(prompt, seed, lora_path or None) -> encoded image bytes
RenderFn = Callable[[str, int, "str | None"], bytes]
#: score(image bytes) -> calibrated IDR, or None when no face is found
ScoreFn = Callable[[bytes], "float | None"]


@dataclass
class Decision:
    approved: bool
    reason: str


def decide(new_idr: float, baseline_idr: float, margin: float) -> Decision:
    """Approve iff the new mean IDR beats the baseline by at least `margin` (and strictly beats it)."""
    gain = new_idr - baseline_idr
    if gain > 0 and gain >= margin - 1e-9:
        return Decision(
            True,
            f"mean IDR {new_idr:.3f} beats the baseline {baseline_idr:.3f} by {gain:+.3f} (margin {margin:.3f})",
        )
    return Decision(
        False,
        f"mean IDR {new_idr:.3f} does not beat the baseline {baseline_idr:.3f} by the margin {margin:.3f} "
        f"(gain {gain:+.3f})",
    )


@dataclass
class ValidationReport:
    new_idr: float
    baseline_idr: float
    approved: bool
    reason: str
    baseline_label: str
    scenes: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        faces_new = sum(1 for s in self.scenes if s["new_face"])
        faces_base = sum(1 for s in self.scenes if s["baseline_face"])
        return {
            "validation_new_idr": self.new_idr,
            "validation_baseline_idr": self.baseline_idr,
            "validation_gain": self.new_idr - self.baseline_idr,
            "validation_renders": float(len(self.scenes)),
            "validation_faces_new": float(faces_new),
            "validation_faces_baseline": float(faces_base),
        }


def validate(
    render: RenderFn,
    score: ScoreFn,
    scenes: Sequence[str],
    seeds: Sequence[int],
    new_lora: str,
    *,
    baseline_lora: str | None = None,
    margin: float = 0.02,
    baseline_label: str = "no LoRA",
) -> ValidationReport:
    if not scenes or not seeds:
        raise InvalidInput("validation needs at least one test scene and one seed")
    rows: list[dict[str, Any]] = []
    for prompt in scenes:
        for seed in seeds:
            new = score(render(prompt, seed, new_lora))
            base = score(render(prompt, seed, baseline_lora))
            rows.append(
                {
                    "prompt": prompt,
                    "seed": int(seed),
                    "new_idr": float(new or 0.0),
                    "baseline_idr": float(base or 0.0),
                    "new_face": new is not None,
                    "baseline_face": base is not None,
                }
            )
    new_mean = sum(r["new_idr"] for r in rows) / len(rows)
    base_mean = sum(r["baseline_idr"] for r in rows) / len(rows)
    d = decide(new_mean, base_mean, margin)
    return ValidationReport(new_mean, base_mean, d.approved, d.reason, baseline_label, rows)


def diffusers_renderer(model_path: str, *, steps: int, size: int, device: str = "auto") -> RenderFn:
    """Render through the shared diffusers pipeline (`idlock.diffusion`, the code the render service serves)."""
    import numpy as np

    from idlock.diffusion import DiffusionConfig, DiffusionPipeline
    from idlock.images import encode_png

    pipeline = DiffusionPipeline(
        DiffusionConfig(model_path=model_path, device=device, steps=steps, default_size=size)
    )

    def render(prompt: str, seed: int, lora: str | None) -> bytes:
        with pipeline.lock:
            pipe = pipeline.load()
            width, height = pipeline.fit(size, size)
            pipeline.apply_lora(lora, 1.0)
            out = pipe(
                prompt=prompt,
                width=width,
                height=height,
                num_inference_steps=steps,
                guidance_scale=pipeline.config.guidance,
                generator=pipeline.generator(int(seed)),
                output_type="pil",
            )
        return encode_png(np.asarray(out.images[0].convert("RGB")))

    return render


def identity_scorer(engine, identity_vector) -> ScoreFn:
    """Calibrated IDR of the best face against the character's identity vector; None without a face."""
    import numpy as np

    vec = np.asarray(identity_vector, dtype=np.float32)

    def score(image: bytes) -> float | None:
        scene = engine.score_identity({"character": vec}, image)
        m = scene.matches[0]
        return float(m.calibrated) if m.found and m.calibrated is not None else None

    return score
