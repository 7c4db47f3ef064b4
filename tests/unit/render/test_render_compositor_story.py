"""The offline compositor draws the story state it is given: garments on the body, props in hand, injuries on the
face at the named side, a backdrop per setting and time of day, and a caption listing what it could not draw."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from services.render.models import RenderRequest, SceneState
from services.render.providers.compositor import CompositorProvider
from services.render.providers.compositor_faces import FaceFinder
from services.render.providers.compositor_scene import compose_scene

CLIFF = SceneState(
    clothing=("armour",),
    props=("silver sword",),
    injuries=("cut on left cheek",),
    setting=("cliff at sunset",),
)
#: the armour came off and the scene moved to a tavern; the sword and the cut are still in effect
TAVERN = SceneState(props=("silver sword",), injuries=("cut on left cheek",), setting=("tavern",))
BARE = SceneState(setting=("tavern",))
STEEL = np.array([150, 156, 168])


@pytest.fixture(scope="module")
def face(astronaut_png):
    crop = FaceFinder().crop(Image.open(io.BytesIO(astronaut_png)).convert("RGB"))
    assert crop is not None
    return crop


def _draw(face, state, seed=5):
    img, lay = compose_scene(768, 768, random.Random(seed), face, state)
    return np.asarray(img).astype(int), lay


def _region(arr, box, pad=0.0):
    x0, y0, x1, y1 = box
    h, w = arr.shape[:2]
    return arr[max(0, int(y0 - pad)) : min(h, int(y1 + pad)), max(0, int(x0 - pad)) : min(w, int(x1 + pad))]


def _share(region, test) -> float:
    return float(test(region.reshape(-1, 3)).mean())


def _steel(px):
    return np.linalg.norm(px - STEEL, axis=1) < 30


def _blood(px):
    return (px[:, 0] > 170) & (px[:, 1] < 70) & (px[:, 2] < 70)


def _silver(px):
    return (px.min(axis=1) > 180) & (px.max(axis=1) - px.min(axis=1) < 30)


def test_armour_sword_cut_cliff_then_no_armour_in_a_tavern(face) -> None:
    cliff, cl = _draw(face, CLIFF)
    tavern, tl = _draw(face, TAVERN)
    bare, bl = _draw(face, BARE)
    # the garment: armour plates cover the torso on the cliff, and are gone in the tavern
    assert ("clothing", "armour") in cl.drawn and not any(c == "clothing" for c, _ in tl.drawn)
    assert _share(_region(cliff, cl.boxes["torso"]), _steel) > 0.4
    assert _share(_region(tavern, tl.boxes["torso"]), _steel) < 0.1
    # the prop: a silver blade in hand in both scenes (still in effect), absent when the state has no sword
    for arr, lay in ((cliff, cl), (tavern, tl)):
        assert _share(_region(arr, lay.boxes["props:silver sword"]), _silver) > 0.05
    assert "props:silver sword" not in bl.boxes
    # the injury: a red cut on the character's left cheek, i.e. right of the face's centre in the image
    for arr, lay in ((cliff, cl), (tavern, tl)):
        box = lay.boxes["injuries:cut on left cheek"]
        fx0, _, fx1, _ = lay.boxes["face"]
        assert (box[0] + box[2]) / 2 > (fx0 + fx1) / 2
        assert _share(_region(arr, box), _blood) > 0.05
    assert _share(_region(bare, tl.boxes["injuries:cut on left cheek"]), _blood) < 0.01
    # the backdrop: a sunset sky over the cliff, plank walls in the tavern
    top_cliff, top_tavern = cliff[: 768 // 5].reshape(-1, 3), tavern[: 768 // 5].reshape(-1, 3)
    assert np.abs(top_cliff.mean(axis=0) - top_tavern.mean(axis=0)).sum() > 60
    assert ("setting", "cliff at sunset") in cl.drawn and ("setting", "tavern") in tl.drawn
    horizon_band = cliff[int(768 * 0.45) : int(768 * 0.5), :40].reshape(-1, 3).mean(axis=0)
    assert horizon_band[0] > horizon_band[2]  # warm light low in the sunset sky


def test_sides_follow_the_character(face) -> None:
    _, left = _draw(face, SceneState(injuries=("bruise on left cheek",)))
    _, right = _draw(face, SceneState(injuries=("bruise on right cheek",)))
    fx = (left.boxes["face"][0] + left.boxes["face"][2]) / 2
    assert (left.boxes["injuries:bruise on left cheek"][0] > fx) and (
        right.boxes["injuries:bruise on right cheek"][2] < fx
    )


def test_unknown_words_are_listed_in_the_caption_and_notes(face, astronaut_png) -> None:
    state = SceneState(clothing=("kimono", "boots"), props=("telescope", "quill"), setting=("space station",))
    arr, lay = _draw(face, state)
    assert "quill (no painter)" in lay.not_drawn and "boots (out of frame)" in lay.not_drawn
    assert "space station (no backdrop for it)" in lay.not_drawn
    caption = _region(arr, lay.boxes["caption"])
    assert _share(caption, lambda px: px.min(axis=1) > 200) > 0.01  # text on the dark strip
    result = CompositorProvider().render_sync(
        RenderRequest(prompt="x", references=[astronaut_png], seed=2, width=512, height=512, state=state)
    )
    assert result.label == "offline/compositor"
    assert any(n.startswith("not drawn:") and "quill" in n and "space station" in n for n in result.notes)


def test_the_face_is_posed_per_scene(face) -> None:
    """Position, scale and tilt change with the seed: the reference is not pasted identically."""
    boxes = {tuple(round(v) for v in _draw(face, BARE, seed)[1].boxes["face"]) for seed in range(6)}
    assert len(boxes) >= 5
