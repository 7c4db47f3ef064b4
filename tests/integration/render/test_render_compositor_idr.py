"""The compositor's scenes as the identity service sees them: the character's face passes, and both drift modes
fall below the refine threshold, so refinement can be exercised offline."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from skimage import data as skdata

from idlock.faces.engine import get_engine
from idlock.images import encode_png, load_image
from services.identity.settings import IdentitySettings
from services.render.models import RenderRequest
from services.render.providers.compositor import CompositorProvider
from services.render.settings import RenderSettings

INSIGHTFACE_IMAGES = (
    Path(importlib.util.find_spec("insightface").submodule_search_locations[0]) / "data" / "images"
)


@pytest.fixture(scope="module")
def engine():
    return get_engine(IdentitySettings(encoder="dlib"))


@pytest.fixture(scope="module")
def character(engine):
    reference = encode_png(skdata.astronaut())
    return reference, engine.encode_references([reference]).vector


def _scene(reference: bytes, **kw) -> bytes:
    req = RenderRequest(
        prompt="Arya on a cliff at sunset", references=[reference], seed=11, width=768, height=768, **kw
    )
    return CompositorProvider(RenderSettings()).render_sync(req).image


def test_character_face_passes(engine, character) -> None:
    reference, identity = character
    match = engine.score_identity({"arya": identity}, _scene(reference)).matches[0]
    assert match.found and match.verdict in ("pass", "golden"), match


def test_other_face_drift_scores_below_refine(engine, character) -> None:
    reference, identity = character
    other = INSIGHTFACE_IMAGES / "Tom_Hanks_54745.png"
    if not other.exists():
        pytest.skip(f"no second face image at {other}")
    drift_face = encode_png(load_image(other).pixels)
    match = engine.score_identity(
        {"arya": identity}, _scene(reference, drift="other_face", drift_face=drift_face)
    ).matches[0]
    assert match.found and match.calibrated < 0.70 and match.verdict == "refine", match


def test_distorted_drift_scores_below_refine(engine, character) -> None:
    reference, identity = character
    match = engine.score_identity({"arya": identity}, _scene(reference, drift="distorted")).matches[0]
    assert not match.found or match.calibrated < 0.70, match
