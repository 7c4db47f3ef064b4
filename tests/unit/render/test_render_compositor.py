"""Offline compositor: deterministic, labelled, and the pasted face is the reference's (dlib via face_recognition)."""

import contextvars
import io
import os
import random

import numpy as np
import pytest
from PIL import Image

from idlock.errors import InvalidInput
from services.render.models import EditRequest, RenderRequest, SceneState
from services.render.providers.compositor import LABEL, CompositorProvider
from services.render.settings import RenderSettings

fr = pytest.importorskip("face_recognition")


@pytest.fixture(scope="module")
def comp():
    return CompositorProvider()


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _encoding(arr: np.ndarray):
    locs = fr.face_locations(arr, number_of_times_to_upsample=1)
    assert locs, "no face detected"
    big = max(locs, key=lambda b: (b[1] - b[3]) * (b[2] - b[0]))
    return fr.face_encodings(arr, [big])[0], big


def _distance(a, b) -> float:
    return float(np.linalg.norm(a - b))


def test_deterministic_for_same_seed_and_labelled(comp, astronaut_png):
    req = {"prompt": "a knight on a cliff at sunset, a dragon above", "references": [astronaut_png]}
    a = comp.render_sync(RenderRequest(seed=11, **req))
    b = comp.render_sync(RenderRequest(seed=11, **req))
    c = comp.render_sync(RenderRequest(seed=12, **req))
    assert a.image == b.image
    assert a.image != c.image
    assert a.label == LABEL == "offline/compositor" and a.provider == "compositor"
    assert a.seed == 11 and (a.width, a.height) == (768, 768)
    assert a.image[:8] == b"\x89PNG\r\n\x1a\n"


def test_seed_is_reported_when_not_given(comp):
    r = comp.render_sync(RenderRequest(prompt="night forest", width=256, height=192))
    assert r.seed is not None and (r.width, r.height) == (256, 192)
    again = comp.render_sync(RenderRequest(prompt="night forest", width=256, height=192, seed=r.seed))
    assert again.image == r.image


@pytest.mark.parametrize("setting", ["city at night", "forest at dawn", "snow", "beach", "tavern"])
def test_settings_change_the_scene(comp, setting):
    """The backdrop comes from the request's state; the prompt's words are not read again."""

    def render(state):
        return comp.render_sync(RenderRequest(prompt="scene", seed=1, width=128, height=128, state=state))

    base = render(SceneState(setting=("field",)))
    other = render(SceneState(setting=(setting,)))
    assert np.abs(_rgb(base.image).astype(int) - _rgb(other.image).astype(int)).mean() > 5
    assert any(f"setting {setting}" in n for n in other.notes)
    worded = comp.render_sync(
        RenderRequest(
            prompt="scene at night in a city",
            seed=1,
            width=128,
            height=128,
            state=SceneState(setting=("field",)),
        )
    )
    assert worded.notes == base.notes  # prompt words draw nothing


def test_face_is_recognised_and_sized(comp, astronaut_png):
    ref, _ = _encoding(_rgb(astronaut_png))
    r = comp.render_sync(
        RenderRequest(
            prompt="a pilot in a forest", references=[astronaut_png], seed=3, width=1024, height=768
        )
    )
    enc, (_top, right, _bottom, left) = _encoding(_rgb(r.image))
    assert _distance(ref, enc) < 0.5
    assert 120 <= right - left <= 280  # dlib's box is a bit tighter/looser than ours; ~150-250 px
    assert r.notes == ["no story state in the request: only the character and a default backdrop were drawn"]


def test_distorted_drift_no_longer_matches(comp, astronaut_png):
    ref, _ = _encoding(_rgb(astronaut_png))
    r = comp.render_sync(
        RenderRequest(
            prompt="a pilot in a forest",
            references=[astronaut_png],
            seed=3,
            drift="distorted",
            state=SceneState(setting=("forest",)),
        )
    )
    enc, _ = _encoding(_rgb(r.image))  # still a face ...
    assert _distance(ref, enc) > 0.6  # ... but not the same person
    assert r.label == LABEL and any("distorted" in n for n in r.notes)


def _photos(faces_dir, n=3):
    people = sorted(p for p in faces_dir.iterdir() if p.is_dir())
    out = []
    for person in people:
        for f in sorted(person.glob("*.jpg")):
            arr = np.asarray(Image.open(f).convert("RGB"))
            if max(arr.shape) > 900:
                im = Image.fromarray(arr)
                im.thumbnail((900, 900))
                arr = np.asarray(im)
            if len(fr.face_locations(arr)) == 1:
                out.append((person.name, f.read_bytes(), arr))
                break
        if len(out) >= n:
            break
    return out


@pytest.mark.slow
def test_real_photos_recognised_and_other_face_drift(comp, faces_dir):
    photos = _photos(faces_dir)
    if len(photos) < 2:
        pytest.skip("fewer than two usable real photos")
    for i, (name, data, arr) in enumerate(photos):
        ref, _ = _encoding(arr)
        same = comp.render_sync(RenderRequest(prompt="portrait by the sea", references=[data], seed=i))
        assert _distance(ref, _encoding(_rgb(same.image))[0]) < 0.5, name
        other_name, other_data, _ = photos[(i + 1) % len(photos)]
        drift = comp.render_sync(
            RenderRequest(
                prompt="portrait by the sea",
                references=[data],
                seed=i,
                drift="other_face",
                drift_face=other_data,
            )
        )
        assert _distance(ref, _encoding(_rgb(drift.image))[0]) > 0.6, (name, other_name)
        dist = comp.render_sync(
            RenderRequest(prompt="portrait by the sea", references=[data], seed=i, drift="distorted")
        )
        assert _distance(ref, _encoding(_rgb(dist.image))[0]) > 0.6, name


def test_reference_without_face_is_reported(comp):
    rng = random.Random(0)
    noise = Image.new("RGB", (200, 200))
    noise.putdata([(rng.randrange(256), 0, 0) for _ in range(200 * 200)])
    buf = io.BytesIO()
    noise.save(buf, "PNG")
    r = comp.render_sync(
        RenderRequest(prompt="x", references=[buf.getvalue()], seed=1, width=128, height=128)
    )
    assert any("no face" in n for n in r.notes)


def test_bad_reference_is_invalid_input(comp):
    with pytest.raises(InvalidInput, match="reference image 0"):
        comp.render_sync(RenderRequest(prompt="x", references=[b"not an image"]))


def test_edit_pastes_reference_face(comp, astronaut_png):
    ref, _ = _encoding(_rgb(astronaut_png))
    scene = comp.render_sync(
        RenderRequest(prompt="forest", references=[astronaut_png], seed=5, drift="distorted")
    )
    fixed = comp.edit_sync(
        EditRequest(image=scene.image, prompt="repair the face", references=[astronaut_png], seed=5)
    )
    assert fixed.label == LABEL
    assert _distance(ref, _encoding(_rgb(fixed.image))[0]) < 0.5


async def test_drawing_runs_on_model_threads_at_the_configured_priority():
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="")
    seen: list[tuple[int, str, bool]] = []
    for priority in ("idle", "normal"):
        comp = CompositorProvider(RenderSettings(model_thread_priority=priority))

        def draw(req, real=comp.render_sync):
            seen.append((os.sched_getscheduler(0), marker.get(), req.prompt == "x"))
            return real(RenderRequest(prompt="a small scene", width=32, height=32, seed=1))

        comp.render_sync = draw
        marker.set(priority)  # the caller's context (its trace span) goes with the work
        result = await comp.render(RenderRequest(prompt="x"))
        assert result.image
        await comp.aclose()
    assert seen == [(os.SCHED_IDLE, "idle", True), (os.SCHED_OTHER, "normal", True)]
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller's thread is left as it was
