"""Identity operations with the real dlib models: astronaut (always present) and real photos (skipped if absent)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from idlock.errors import InvalidInput, PreconditionFailed
from idlock.faces.engine import IdentityEngine
from idlock.images import encode_jpeg, encode_png
from services.identity.settings import IdentitySettings


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


def test_detect_astronaut(engine: IdentityEngine, astronaut: np.ndarray) -> None:
    faces = engine.detect_faces(encode_png(astronaut))
    assert len(faces) == 1
    f = faces[0]
    x0, y0, x1, y1 = f.box
    assert 150 < x0 < 210 and 60 < y0 < 110 and 240 < x1 < 300 and 150 < y1 < 200
    assert len(f.landmarks) == 5 and f.score > 0.5
    assert f.size_px >= 80 and f.blur > 100
    assert abs(f.pose.yaw) < 15 and abs(f.pose.pitch) < 15 and abs(f.pose.roll) < 10
    assert f.embedding is None
    assert engine.detect_faces(astronaut, embed=True)[0].embedding.shape == (128,)


def test_no_face_scene_is_reported(engine: IdentityEngine, astronaut: np.ndarray) -> None:
    ident = engine.encode_references([astronaut])
    scene = engine.score_identity({"eileen": ident.vector}, skdata.coffee())
    assert scene.no_face and scene.face_count == 0 and scene.message == "no face was found in the scene"
    assert [(m.character, m.found, m.verdict, m.raw) for m in scene.matches] == [
        ("eileen", False, "no_face", None)
    ]


def test_encode_references_astronaut(engine: IdentityEngine, astronaut: np.ndarray) -> None:
    views = [encode_png(astronaut), encode_jpeg(astronaut, quality=70), encode_png(astronaut[:, ::-1].copy())]
    ident = engine.encode_references(views)
    assert ident.encoder == "dlib" and ident.dim == 128 and ident.views.shape == (3, 128)
    assert abs(np.linalg.norm(ident.vector) - 1) < 1e-9
    assert ident.inconsistent_indices == [] and ident.used_indices == [0, 1, 2]
    assert all(q.face_count == 1 and not q.multiple_faces and q.consistency > 0.9 for q in ident.qualities)
    # the same face, rescaled and re-encoded, scores golden against its identity
    scene = engine.score_identity(
        {"eileen": ident.vector}, encode_jpeg(cv2.resize(astronaut, (700, 700)), quality=85)
    )
    m = scene.matches[0]
    assert m.found and m.verdict == "golden" and m.calibrated > 0.85 and m.raw > 0.95


def test_reference_count_limits(engine: IdentityEngine, astronaut: np.ndarray) -> None:
    with pytest.raises(InvalidInput, match=r"^at least one reference image is needed \(got 0\)$"):
        engine.encode_references([])
    with pytest.raises(InvalidInput, match=r"^at most 5 reference images are accepted \(got 6\)$"):
        engine.encode_references([astronaut] * 6)


def test_reference_without_face_names_the_index(engine: IdentityEngine, astronaut: np.ndarray) -> None:
    with pytest.raises(PreconditionFailed, match=r"^no face found in reference image 1$") as ei:
        engine.encode_references([astronaut, encode_jpeg(skdata.coffee())])
    assert ei.value.details == {"reason": "no_face", "index": 1}


def test_bad_reference_bytes_name_the_index(engine: IdentityEngine, astronaut: np.ndarray) -> None:
    with pytest.raises(InvalidInput, match=r"^reference image 2 is not an image"):
        engine.encode_references([astronaut, astronaut, b"definitely not a picture"])


def test_small_face_rejected(engine: IdentityEngine, astronaut: np.ndarray) -> None:
    tiny = cv2.resize(astronaut, (180, 180), interpolation=cv2.INTER_AREA)  # face ~31 px, still detected
    assert engine.detect_faces(tiny), "the adaptive upsampling must still find the small face"
    with pytest.raises(
        PreconditionFailed, match=r"^face in reference image 0 is too small: \d+ px < minimum 40 px$"
    ):
        engine.encode_references([tiny])
    small = cv2.resize(astronaut, (400, 400), interpolation=cv2.INTER_AREA)  # face ~69 px: accepted, flagged
    q = engine.encode_references([small]).qualities[0]
    assert q.small_face and "small face" in q.warnings[0]


def test_blurred_face_rejected(astronaut: np.ndarray) -> None:
    strict = IdentityEngine(IdentitySettings(min_blur=60.0))
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 1.5)
    with pytest.raises(
        PreconditionFailed,
        match=r"^face in reference image 0 is too blurred: sharpness [\d.]+ < "
        r"minimum 60.0$",
    ) as ei:
        strict.encode_references([blurred])
    assert ei.value.details["reason"] == "face_too_blurred"


def test_identity_vector_dimension_checked(engine: IdentityEngine, astronaut: np.ndarray) -> None:
    with pytest.raises(
        InvalidInput, match=r"identity vector of 'x' has 512 dimensions; the dlib encoder uses 128"
    ):
        engine.score_identity({"x": np.ones(512)}, astronaut)
    with pytest.raises(InvalidInput, match="at least one identity vector"):
        engine.score_identity({}, astronaut)


def test_verdict_bands(engine: IdentityEngine) -> None:
    assert [engine.verdict(v) for v in (0.1, 0.699, 0.70, 0.749, 0.75, 0.85, 0.851)] == [
        "refine",
        "refine",
        "borderline",
        "borderline",
        "pass",
        "pass",
        "golden",
    ]


# ------------------------------------------------------------------------------------- real photos


def test_real_same_and_different(engine: IdentityEngine, identities, photo) -> None:
    a = identities["deepface_id01"]
    b = identities["deepface_id03"]
    same = engine.compare_images(photo(a[0]), photo(a[1]))
    diff = engine.compare_images(photo(a[0]), photo(b[0]))
    assert same.calibrated >= 0.75 and same.verdict in ("pass", "golden")
    assert diff.calibrated < 0.70 and diff.verdict == "refine"
    assert same.raw > diff.raw
    assert same.face_a.size_px > 100


def test_references_consistency_flags_the_odd_one(engine: IdentityEngine, identities, photo) -> None:
    a = identities["deepface_id01"]
    intruder = identities["deepface_id11"][0]
    ident = engine.encode_references([photo(a[0]), photo(a[1]), photo(intruder), photo(a[2])])
    assert ident.inconsistent_indices == [2]
    assert ident.qualities[2].inconsistent and ident.qualities[2].consistency < 0.5
    assert ident.used_indices == [0, 1, 3]
    scene = engine.score_identity({"p": ident.vector}, photo(a[3]))
    assert scene.matches[0].verdict in ("pass", "golden")
    # two references that disagree: the second is flagged (the first is the anchor)
    pair = engine.encode_references([photo(a[0]), photo(intruder)])
    assert pair.inconsistent_indices == [1] and pair.used_indices == [0, 1]


def test_multi_face_scene_assignment(engine: IdentityEngine, identities, photo, resized) -> None:
    ids_a, ids_b = identities["deepface_id01"], identities["deepface_id03"]
    ref_a = engine.encode_references([photo(p) for p in ids_a[:3]])
    ref_b = engine.encode_references([photo(p) for p in ids_b[:3]])
    left = resized(photo(ids_a[4]).pixels, 500)
    right = resized(photo(ids_b[4]).pixels, 500)
    canvas = np.full((500, left.shape[1] + right.shape[1] + 40, 3), 255, np.uint8)
    canvas[:, : left.shape[1]] = left
    canvas[:, left.shape[1] + 40 :] = right
    for order in (("alice", "bob"), ("bob", "alice")):
        vectors = {"alice": ref_a.vector, "bob": ref_b.vector}
        scene = engine.score_identity({k: vectors[k] for k in order}, encode_jpeg(canvas))
        assert scene.face_count == 2
        by_name = {m.character: m for m in scene.matches}
        assert by_name["alice"].box[2] <= left.shape[1] + 5, "alice must be matched to the left face"
        assert by_name["bob"].box[0] >= left.shape[1] + 30, "bob must be matched to the right face"
        assert by_name["alice"].face_index != by_name["bob"].face_index
        assert all(m.verdict in ("pass", "golden") for m in scene.matches)
    # three characters, two faces: the third is reported as unmatched, not given a face twice
    scene = engine.score_identity(
        {
            "alice": ref_a.vector,
            "bob": ref_b.vector,
            "carol": engine.encode_references([skdata.astronaut()]).vector,
        },
        canvas,
    )
    carol = next(m for m in scene.matches if m.character == "carol")
    assert not carol.found and carol.verdict == "unmatched"
    # the two-face canvas as a reference: flagged, the largest face is used
    q = engine.encode_references([canvas]).qualities[0]
    assert q.multiple_faces and q.face_count == 2 and "2 faces found" in q.warnings[0]


def test_pose_follows_rotation_and_mirroring(engine: IdentityEngine, astronaut: np.ndarray) -> None:
    base = engine.detect_faces(astronaut)[0]
    x0, y0, x1, y1 = base.box
    m = cv2.getRotationMatrix2D(((x0 + x1) / 2, (y0 + y1) / 2), -20, 1.0)  # clockwise on screen
    rotated = cv2.warpAffine(astronaut, m, (512, 512), borderMode=cv2.BORDER_REFLECT)
    turned = engine.detect_faces(rotated)[0]
    assert abs((turned.pose.roll - base.pose.roll) - 20) < 6
    mirrored = engine.detect_faces(astronaut[:, ::-1].copy())[0]
    assert abs(mirrored.pose.yaw + base.pose.yaw) < 3 and abs(mirrored.pose.roll + base.pose.roll) < 3


def test_core_modules_import_no_grpc_or_nats() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import idlock.faces.engine, services.identity.frames, services.identity.evaluation\n"
        "import services.identity.cli, idlock.images\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'nats'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_cnn_detector_option(astronaut: np.ndarray) -> None:
    cnn = IdentityEngine(IdentitySettings(detector="cnn", max_side=400))
    (face,) = cnn.detect_faces(astronaut)
    x0, y0, x1, _y1 = face.box
    assert 150 < x0 < 210 and 50 < y0 < 110 and 240 < x1 < 300 and face.score > 0.5
    ident = cnn.encode_references([astronaut])
    assert ident.vector.shape == (128,)
