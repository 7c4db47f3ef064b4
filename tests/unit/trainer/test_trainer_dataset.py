"""Dataset builder: quality filter, perceptual-hash de-duplication, crops, captions, statistics (and why)."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from services.trainer.dataset import (
    BLURRED,
    DUPLICATE,
    FACE_TOO_SMALL,
    MISSING,
    NO_FACE,
    OVER_REPRESENTED,
    UNDECODABLE,
    BuildConfig,
    Candidate,
    Face,
    build_dataset,
)
from tests.fakes.trainer_data import blurred, near_duplicate, png, textured


def _size(data: bytes) -> tuple[int, int]:
    return Image.open(io.BytesIO(data)).size


def test_drops_duplicates_and_blurred_images_and_says_why() -> None:
    a, b = textured(1), textured(2)
    cands = [
        Candidate("g_a", png(a), job_id="j_a", idr=0.91, tags=["forest camp", "armour"], prompt="p a"),
        Candidate("g_b", png(b), job_id="j_b", idr=0.88, tags=["tavern"]),
        Candidate("g_a2", png(near_duplicate(a)), job_id="j_a2", idr=0.87),  # a twin of g_a, lower IDR
        Candidate("g_blur", png(blurred(textured(3))), job_id="j_blur", idr=0.95),
        Candidate("g_bad", b"not an image", job_id="j_bad", idr=0.9),
        Candidate("g_gone", None, job_id="j_gone", idr=0.9),
    ]
    built = build_dataset(
        cands, BuildConfig(resolution=32, token="zq", face_crops=False), None, character_id="c1", version=3
    )
    stats = built.metadata["stats"]
    assert stats == {
        "candidates": 6,
        "kept": 2,
        "images": 2,
        "dropped": {BLURRED: 1, DUPLICATE: 1, MISSING: 1, UNDECODABLE: 1},
    }
    why = {d["golden_id"]: d for d in built.metadata["dropped"]}
    assert why["g_a2"]["reason"] == DUPLICATE and why["g_a2"]["duplicate_of"] == "g_a"
    assert why["g_blur"]["reason"] == BLURRED and why["g_blur"]["sharpness"] < 20
    assert why["g_bad"]["reason"] == UNDECODABLE and why["g_gone"]["reason"] == MISSING
    # layout: images/, captions/, metadata.json; best IDR first; the caption names the token and the scene
    assert sorted(built.files) == [
        "captions/001.txt",
        "captions/002.txt",
        "images/001.png",
        "images/002.png",
        "metadata.json",
    ]
    assert built.files["captions/001.txt"].decode() == "a photo of zq person, forest camp, armour"
    assert built.files["captions/002.txt"].decode() == "a photo of zq person, tavern"
    assert all(_size(built.files[f"images/00{i}.png"]) == (32, 32) for i in (1, 2))
    meta = json.loads(built.files["metadata.json"])
    assert meta["character_id"] == "c1" and meta["version"] == 3 and meta["items"][0]["golden_id"] == "g_a"
    assert meta["items"][0]["job_id"] == "j_a" and meta["items"][0]["prompt"] == "p a"
    images, captions = built.images_and_captions()
    assert len(images) == len(captions) == 2


def test_dedup_distance_is_a_setting() -> None:
    a = textured(1)
    cands = [Candidate("g1", png(a), idr=0.9), Candidate("g2", png(near_duplicate(a)), idr=0.9)]
    assert build_dataset(cands, BuildConfig(resolution=32, dedup_distance=0), None).kept in (1, 2)
    # a negative distance can never match: nothing counts as a duplicate
    assert build_dataset(cands, BuildConfig(resolution=32, dedup_distance=-1), None).kept == 2
    assert build_dataset(cands, BuildConfig(resolution=32, dedup_distance=64), None).kept == 1


def test_face_checks_and_aligned_face_crops() -> None:
    img = textured(5, side=128)
    boxes = {
        0: [],  # no face
        1: [Face((10, 10, 30, 30))],  # 20 px: too small
        2: [Face((30, 30, 94, 94), left_eye=(48, 52), right_eye=(78, 58))],  # tilted eyes, large face
    }
    calls = iter(range(3))

    def finder(rgb: np.ndarray):
        assert rgb.shape == (128, 128, 3)
        return boxes[next(calls)]

    cands = [
        Candidate("g0", png(img), idr=0.99),
        Candidate("g1", png(textured(6, side=128)), idr=0.98),
        Candidate("g2", png(textured(7, side=128)), idr=0.97, tags=["cliff"]),
    ]
    built = build_dataset(cands, BuildConfig(resolution=48, min_face_px=40, token="zq"), finder)
    assert built.metadata["stats"]["dropped"] == {NO_FACE: 1, FACE_TOO_SMALL: 1}
    kinds = [(i["kind"], i["golden_id"]) for i in built.metadata["items"]]
    assert kinds == [("full", "g2"), ("face", "g2")]
    assert built.files["captions/002.txt"].decode() == "a close-up photo of zq person, cliff"
    assert _size(built.files["images/002.png"]) == (48, 48)
    assert built.files["images/001.png"] != built.files["images/002.png"]


def test_boosted_images_are_preferred_over_their_duplicates() -> None:
    a = textured(9)
    cands = [
        Candidate("g_hi", png(a), idr=0.97),
        Candidate("g_up", png(near_duplicate(a)), idr=0.86, boosted=True),
    ]
    built = build_dataset(cands, BuildConfig(resolution=32), None)
    assert [i["golden_id"] for i in built.metadata["items"]] == ["g_up"]


def test_real_face_detector_on_a_photo() -> None:
    """The identity engine's detector (dlib, offline) finds the astronaut's face and the crop is eye-aligned."""
    from skimage import data

    from idlock.faces.engine import get_engine
    from services.identity.settings import IdentitySettings
    from services.trainer.dataset import identity_face_finder

    finder = identity_face_finder(get_engine(IdentitySettings()))
    photo = data.astronaut()
    faces = finder(photo)
    assert faces and faces[0].left_eye is not None and faces[0].size_px > 64
    built = build_dataset([Candidate("g", png(photo), idr=0.9)], BuildConfig(resolution=64), finder)
    assert [i["kind"] for i in built.metadata["items"]] == ["full", "face"]


def test_an_outfit_most_scenes_share_is_balanced_and_captions_name_it() -> None:
    # 8 distinct scenes; 6 wear the red cloak, 2 do not: at most half may carry it
    cands = [
        Candidate(
            f"g{i}",
            png(textured(40 + i)),
            idr=0.95 - i * 0.01,
            tags=["red cloak"] if i < 6 else ["blue tunic"],
            attributes={"clothing": ["red cloak"] if i < 6 else ["blue tunic"], "mood": ["calm"]},
            boosted=i == 5,
        )
        for i in range(8)
    ]
    config = BuildConfig(resolution=32, face_crops=False, max_attribute_share=0.5, balance_min_images=3)
    built = build_dataset(cands, config, None)
    kept = [i["golden_id"] for i in built.metadata["items"]]
    shares = built.metadata["attributes"]
    assert shares["clothing:red cloak"] <= 0.5 and "mood:calm" not in shares  # moods are not balanced
    # the least preferred cloaks went first; the one rated up stayed
    assert kept == ["g5", "g0", "g6", "g7"]
    dropped = [d for d in built.metadata["dropped"] if d["reason"] == OVER_REPRESENTED]
    assert [d["golden_id"] for d in dropped] == ["g4", "g3", "g2", "g1"]
    assert all(d["attribute"] == "clothing:red cloak" for d in dropped)
    assert built.metadata["unbalanced"] == []
    caption = built.files[built.metadata["items"][0]["caption"]].decode()
    assert "red cloak" in caption  # named in the caption, so it does not bind to the token

    # balancing off, or a floor reached: nothing (more) is dropped, and the imbalance is said
    off = build_dataset(cands, BuildConfig(resolution=32, face_crops=False, max_attribute_share=1.0), None)
    assert off.kept == 8 and off.metadata["unbalanced"] == []
    floor = build_dataset(cands, BuildConfig(resolution=32, face_crops=False, balance_min_images=8), None)
    assert floor.kept == 8 and floor.metadata["unbalanced"] == ["clothing:red cloak"]


def test_an_image_rated_up_carries_a_sampling_weight() -> None:
    cands = [
        Candidate("g_up", png(textured(60)), idr=0.8, boosted=True),
        Candidate("g_plain", png(textured(61)), idr=0.9),
    ]
    built = build_dataset(cands, BuildConfig(resolution=32, face_crops=False, boost_weight=3), None)
    weights = {i["golden_id"]: i["weight"] for i in built.metadata["items"]}
    assert weights == {"g_up": 3, "g_plain": 1}


async def test_training_samples_an_image_rated_up_as_often_as_its_weight(tmp_path) -> None:
    from types import SimpleNamespace

    from idlock.storage import LocalObjectStore
    from services.trainer.datasets import Datasets

    cands = [
        Candidate("g_up", png(textured(62)), idr=0.8, boosted=True, tags=["harbour"]),
        Candidate("g_plain", png(textured(63)), idr=0.9, tags=["forest"]),
    ]
    built = build_dataset(cands, BuildConfig(resolution=32, face_crops=False, boost_weight=2), None)
    store = LocalObjectStore(tmp_path)
    uri = ""
    for rel, data in built.files.items():
        stored = await store.put(f"lora_datasets/c/v1/{rel}", data)
        uri = stored.uri if rel == "metadata.json" else uri
    images, captions, meta = await Datasets(SimpleNamespace(store=store), face_finder=None).load(uri)
    assert len(meta["items"]) == 2 and len(images) == 3
    assert sorted(captions) == sorted(
        ["a photo of sks person, harbour"] * 2 + ["a photo of sks person, forest"]
    )
