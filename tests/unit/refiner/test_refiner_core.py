"""Refiner core without gRPC: transforms, seam measure, attempt plan, best-of-N never worse, no face."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from PIL import Image
from skimage import data

from idlock.errors import PreconditionFailed
from idlock.faces.engine import get_engine
from idlock.images import encode_png
from services.identity.settings import IdentitySettings
from services.refiner import pipeline
from services.refiner.core import FaceRefiner, affine_transform, seam_measure, similarity_transform
from services.render.providers.compositor import FaceFinder, distort_face


@pytest.fixture(scope="module")
def engine():
    return get_engine(IdentitySettings())


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def test_similarity_and_affine_recover_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    a = np.deg2rad(12)
    m = np.array([[1.3 * np.cos(a), -1.3 * np.sin(a), 20], [1.3 * np.sin(a), 1.3 * np.cos(a), -7]])
    dst = src @ m[:, :2].T + m[:, 2]
    assert np.allclose(similarity_transform(src, dst), m, atol=1e-6)
    assert np.allclose(affine_transform(src, dst), m, atol=1e-6)


def test_seam_measure_flags_a_hard_paste_not_a_feathered_one():
    rng = np.random.default_rng(1)
    base = np.clip(rng.normal(120, 6, (200, 200, 3)), 0, 255).astype(np.uint8)
    mask = np.zeros((200, 200), np.uint8)
    mask[60:140, 60:140] = 255
    hard = base.copy()
    hard[60:140, 60:140] = np.clip(base[60:140, 60:140].astype(int) + 70, 0, 255)
    assert seam_measure(base, base, mask) == 0.0
    hard_seam = seam_measure(base, hard, mask)
    assert hard_seam > 1.0  # above the default bound
    import cv2

    weight = cv2.GaussianBlur(mask, (0, 0), 8)
    a = weight[..., None] / 255.0
    soft = np.clip(base * (1 - a) + np.clip(base.astype(int) + 70, 0, 255) * a, 0, 255).astype(np.uint8)
    assert seam_measure(base, soft, weight) < hard_seam / 3


def test_plan_takes_strategies_in_turn():
    assert pipeline.plan(["reference-warp", "render"], 2) == [("reference-warp", 0), ("render", 0)]
    assert pipeline.plan(["reference-warp"], 3) == [
        ("reference-warp", 0),
        ("reference-warp", 1),
        ("reference-warp", 2),
    ]


def _scene(face: np.ndarray, size: int = 640) -> np.ndarray:
    """A flat background with `face` pasted in the middle (the compositor's way of drawing a character)."""
    canvas = Image.new("RGB", (size, size), (90, 120, 170))
    im = Image.fromarray(face).resize((size // 2, size // 2))
    canvas.paste(im, (size // 4, size // 5))
    return np.asarray(canvas).copy()


async def test_reference_warp_repairs_a_distorted_face_and_changes_only_its_region(engine, astronaut):
    from idlock.images import decode_image
    from services.render.models import RenderRequest
    from services.render.providers.compositor import CompositorProvider

    ident = engine.encode_references([astronaut]).vector
    r = CompositorProvider().render_sync(
        RenderRequest(
            prompt="a pilot in a field",
            references=[encode_png(astronaut)],
            drift="distorted",
            width=640,
            height=640,
            seed=3,
            watermark=False,
        )
    )
    scene = decode_image(r.image).pixels
    refiner = FaceRefiner(engine)
    out = await pipeline.refine(
        refiner,
        scene,
        ident,
        [encode_png(astronaut)],
        strategies=["reference-warp"],
        max_attempts=2,
        threshold=0.75,
        seam_bound=1.0,
        min_gain=0.01,
    )
    assert out.improved and out.after.calibrated > out.before.calibrated
    assert out.best.seam <= 1.0 and out.best.seconds > 0
    changed = np.any(out.best.image != scene, axis=-1)
    x0, y0, x1, y1 = refiner.region(refiner.locate(ident, scene).face, scene.shape)
    assert not changed[:y0].any() and not changed[y1:].any()
    assert not changed[:, :x0].any() and not changed[:, x1:].any()


async def test_input_is_kept_when_no_attempt_beats_it(engine, astronaut):
    """References of a 'different person' (a heavily distorted astronaut) can only make the face worse."""
    ident = engine.encode_references([astronaut]).vector
    scene = _scene(astronaut)
    crop = FaceFinder().crop(Image.fromarray(astronaut))
    wrong = np.asarray(distort_face(crop, 2.2).image)
    out = await pipeline.refine(
        FaceRefiner(engine),
        scene,
        ident,
        [encode_png(wrong)],
        strategies=["reference-warp"],
        max_attempts=2,
        threshold=0.99,
        seam_bound=1.0,
        min_gain=0.01,
    )
    assert not out.improved and out.best is None
    assert out.after == out.before
    assert all(not a.eligible and a.rejected_reason for a in out.attempts)


async def test_no_face_is_a_precondition_failure(engine, astronaut):
    ident = engine.encode_references([astronaut]).vector
    blank = np.full((300, 300, 3), 127, np.uint8)
    with pytest.raises(PreconditionFailed, match="no face"):
        await pipeline.refine(
            FaceRefiner(engine),
            blank,
            ident,
            [encode_png(astronaut)],
            strategies=["reference-warp"],
            max_attempts=1,
            threshold=0.75,
            seam_bound=1.0,
            min_gain=0.01,
        )


async def test_a_reference_photos_faces_leave_memory_after_their_max_age(tmp_path, monkeypatch, astronaut):
    """The refiner keeps a reference photo's pixels and faces for the next attempt, but not past its max age, used
    or not: an erased character's photo leaves nothing here (the service's periodic expiry runs on its own)."""
    from services.refiner.refine import Refiner
    from services.refiner.settings import RefinerSettings

    monkeypatch.setenv("IDLOCK_DATA_DIR", str(tmp_path))
    service = Refiner(RefinerSettings(reference_cache_max_age_s=0.2))
    await service.open()
    try:
        png = encode_png(astronaut)
        faces = service.refiner.reference_faces(np.ones(128) / np.sqrt(128), [png])
        assert len(faces) == 1 and len(service.refiner.references) == 1
        assert service.refiner.reference_faces(np.ones(128) / np.sqrt(128), [png])[0].face is faces[0].face
        await asyncio.sleep(0.5)
        assert len(service.refiner.references) == 0
    finally:
        await service.close()
