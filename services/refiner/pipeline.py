"""Best of N: run the attempts a strategy plan asks for, measure each, keep the best, never return a worse image.
Every attempt is also checked for being a near-copy of a reference: its face-print similarity is measured, and a
reference-warp attempt is flagged whatever the measure says (it moves a reference face into the scene, so it is a
copy by construction; choosing the warp the detector happens to miss would only hide that). A non-copy attempt
that passes is preferred over a copy.

No grpc here: the servicer hands in an `editor` (the render service's EditImage behind a callable) and a `run`
that moves image work to a thread pool; the benchmark drives the same loop directly.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np

from idlock.errors import IdlockError, PreconditionFailed
from idlock.faces.copies import CopyCheck
from idlock.images import decode_image, encode_png
from services.refiner.core import Candidate, FaceRefiner, RefFace, Score, Target

#: reference-warp variants, one per attempt: (reference rank, transform, blend)
WARP_VARIANTS = (
    (0, "similarity", "feather"),
    (1, "similarity", "feather"),
    (0, "similarity", "poisson"),
    (2, "affine", "feather"),
    (1, "similarity", "poisson"),
)

RENDER_PROMPT = (
    "Restore this person's face so that it is exactly the person shown in the reference images: the same face "
    "shape, eyes, eyebrows, nose, mouth, jawline and skin tone. Keep the expression, head pose, lighting, hair, "
    "clothing and background of the image unchanged. Photorealistic, sharp facial detail."
)
RENDER_NEGATIVE = "different person, distorted face, asymmetric eyes, extra features, blurry, cartoon"

#: async (crop png, mask png, prompt, negative) -> edited image bytes
Editor = Callable[[bytes, bytes, str, str], Awaitable[bytes]]
Runner = Callable[..., Awaitable]


@dataclass
class AttemptResult:
    index: int
    strategy: str
    score: Score | None
    seconds: float
    seam: float
    image: np.ndarray | None
    eligible: bool
    rejected_reason: str = ""
    notes: list[str] = field(default_factory=list)
    copy: CopyCheck | None = None
    #: what the face print alone said (a reference warp is flagged in `copy` whatever it says)
    copy_detected: bool = False

    @property
    def near_copy(self) -> bool:
        return self.copy is not None and self.copy.near_copy


@dataclass
class Outcome:
    before: Score
    attempts: list[AttemptResult]
    best: AttemptResult | None  # None: the input is kept
    face_count: int
    threshold: float
    #: the input's face against the references
    before_copy: CopyCheck | None = None

    @property
    def improved(self) -> bool:
        return self.best is not None

    @property
    def after(self) -> Score:
        return self.best.score if self.best is not None else self.before

    @property
    def after_copy(self) -> CopyCheck | None:
        return self.best.copy if self.best is not None else self.before_copy


def plan(strategies: list[str], max_attempts: int) -> list[tuple[str, int]]:
    """(strategy, its k-th attempt) in order: one attempt of each strategy in turn, then a second of each..."""
    out: list[tuple[str, int]] = []
    k = 0
    while len(out) < max_attempts:
        for s in strategies:
            if len(out) < max_attempts:
                out.append((s, k))
        k += 1
    return out


async def _inline(fn, *args, **kw):
    return fn(*args, **kw)


async def refine(
    refiner: FaceRefiner,
    rgb: np.ndarray,
    identity: np.ndarray,
    references: list[bytes],
    *,
    strategies: list[str],
    max_attempts: int,
    threshold: float,
    seam_bound: float,
    min_gain: float,
    render_margin: float = 0.6,
    render_size: int = 1024,
    editor: Editor | None = None,
    upscaler=None,
    run: Runner = _inline,
    prompt: str = "",
    target_box: tuple[float, float, float, float] | None = None,
) -> Outcome:
    """Attempts in plan order (stopping at the first that passes `threshold`), the best eligible one chosen.

    An attempt is eligible when a face was found where the target was, its seam is within `seam_bound` and its
    calibrated IDR beats the input's by at least `min_gain`. Raises PreconditionFailed when the image has no face.
    `target_box` picks the face to repair among several (the one it overlaps most).
    """
    prints = await run(refiner.reference_prints, references) if references else []
    target: Target = await run(refiner.locate, identity, rgb, prints, target_box)
    ref_faces: list[RefFace] | None = None
    attempts: list[AttemptResult] = []
    steps = plan(strategies, max_attempts)
    for index, (strategy, k) in enumerate(steps):
        t0 = time.perf_counter()
        notes: list[str] = []
        try:
            if strategy == "reference-warp":
                if ref_faces is None:
                    ref_faces = await run(refiner.reference_faces, identity, references)
                if not ref_faces:
                    raise PreconditionFailed("no face was found in the character's reference images")
                rank, transform, blend = WARP_VARIANTS[k % len(WARP_VARIANTS)]
                ref = ref_faces[min(rank, len(ref_faces) - 1)]
                cand: Candidate = await run(
                    refiner.reference_warp, rgb, target.face, ref, transform=transform, blend=blend
                )
            elif strategy == "render":
                if editor is None:
                    raise PreconditionFailed("render strategy unavailable: no render service configured")
                crop, mask, box = await run(
                    refiner.face_crop,
                    rgb,
                    target.face,
                    margin=render_margin,
                    size=render_size,
                    upscaler=upscaler,
                )
                text = RENDER_PROMPT + (f" Scene: {prompt.strip()}" if prompt.strip() else "")
                edited = await editor(encode_png(crop), encode_png(mask), text, RENDER_NEGATIVE)
                edited_rgb = decode_image(edited, name="edited face").pixels
                cand = await run(refiner.fit_back, rgb, edited_rgb, box, target.face)
                cand.notes.append(
                    f"crop {box[2] - box[0]}x{box[3] - box[1]} px upscaled to {crop.shape[1]} px"
                )
            else:
                raise PreconditionFailed(f"unknown strategy {strategy!r}")
            notes += cand.notes
            ev = await run(refiner.evaluate, identity, rgb, cand, target.face, prints)
        except (TimeoutError, IdlockError) as e:  # an attempt that fails is reported, the others go on
            attempts.append(
                AttemptResult(
                    index=index,
                    strategy=strategy,
                    score=None,
                    seconds=round(time.perf_counter() - t0, 4),
                    seam=0.0,
                    image=None,
                    eligible=False,
                    rejected_reason=f"attempt failed: {e}",
                )
            )
            continue
        copy, detected = ev.copy, bool(ev.copy and ev.copy.near_copy)
        if strategy == "reference-warp" and copy is not None and not copy.near_copy:
            copy = dataclasses.replace(copy, near_copy=True)
            notes.append("a reference warp is a copy by construction: flagged as a near-copy")
        reason = ""
        if ev.score is None:
            reason = "no face found where the character's face was"
        elif ev.seam > seam_bound:
            reason = f"visible seam {ev.seam:.3f} above the bound {seam_bound}"
        elif ev.score.calibrated < target.score.calibrated + min_gain:
            reason = (
                f"calibrated IDR {ev.score.calibrated:.3f} does not beat the input's "
                f"{target.score.calibrated:.3f} by {min_gain}"
            )
        attempts.append(
            AttemptResult(
                index=index,
                strategy=strategy,
                score=ev.score,
                seconds=round(time.perf_counter() - t0, 4),
                seam=ev.seam,
                image=cand.image,
                eligible=not reason,
                rejected_reason=reason,
                notes=notes,
                copy=copy,
                copy_detected=detected,
            )
        )
        # a pass that is a copy ends the search only when no later attempt could be other than a reference warp
        later_non_warp = any(s != "reference-warp" for s, _ in steps[index + 1 :])
        if (
            not reason
            and ev.score.calibrated >= threshold
            and not (attempts[-1].near_copy and later_non_warp)
        ):
            break
    eligible = [a for a in attempts if a.eligible]
    best = max(
        eligible,
        key=lambda a: (a.score.calibrated >= threshold and not a.near_copy, a.score.calibrated),
        default=None,
    )
    return Outcome(
        before=target.score,
        attempts=attempts,
        best=best,
        face_count=target.face_count,
        threshold=threshold,
        before_copy=target.copy,
    )
