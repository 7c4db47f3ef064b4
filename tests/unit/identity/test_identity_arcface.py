"""The arcface encoder path with generated ONNX models that have buffalo_l's signatures (no weights download).

Recognition (w600k_r50 signature: [N,3,112,112] -> [N,512]) is tested on aligned crops; the full detect -> align ->
embed path uses a synthetic SCRFD (det_10g signature, 9 outputs) that finds white squares. What the models compute
is meaningless as face recognition; what is tested is our loading, routing, pre/post-processing and batching.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort
import pytest
from skimage import data as skdata

from idlock.errors import PreconditionFailed, Unavailable
from idlock.faces import encoders
from idlock.faces.encoders import ArcFaceEncoder, get_encoder, onnx_providers
from idlock.faces.engine import IdentityEngine
from services.identity.settings import IdentitySettings
from services.identity.synthetic_models import write_buffalo_like_dir


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_buffalo_like_dir(tmp_path_factory.mktemp("buffalo_l"))


@pytest.fixture(scope="module")
def rec_only_dir(tmp_path_factory):
    return write_buffalo_like_dir(tmp_path_factory.mktemp("rec_only"), with_detector=False)


def _scene(squares: list[tuple[int, int]], size=(640, 640)) -> np.ndarray:
    img = np.zeros((size[0], size[1], 3), np.uint8)
    for y, x in squares:
        img[y : y + 32, x : x + 32] = 255
    return img


def test_recognition_on_aligned_crops(rec_only_dir) -> None:
    enc = ArcFaceEncoder(
        IdentitySettings(encoder="arcface", model_dir=rec_only_dir, onnx_providers="CPUExecutionProvider")
    )
    assert enc.dim == 512 and enc.rec.input_size == (112, 112) and enc.rec.input_mean == 127.5
    face = skdata.astronaut()[83:195, 167:279]  # a 112 x 112 crop around the face
    other = skdata.coffee()[100:212, 200:312]
    embs = enc.embed_aligned([face, face.copy(), other])
    assert embs.shape == (3, 512)
    assert np.allclose(np.linalg.norm(embs, axis=1), 1.0)
    assert float(embs[0] @ embs[1]) == pytest.approx(1.0, abs=1e-6)
    assert float(embs[0] @ embs[2]) < 0.99
    # a batch gives what single calls give
    assert np.allclose(enc.embed_aligned([other])[0], embs[2], atol=1e-5)
    with pytest.raises(PreconditionFailed, match="has no detector"):
        enc.detect(face)


def test_full_path_with_synthetic_detector(model_dir) -> None:
    eng = IdentityEngine(IdentitySettings(encoder="arcface", model_dir=model_dir, min_blur=0.0))
    assert eng.encoder.name == "arcface" and eng.calibration.encoder == "arcface"
    faces = eng.detect_faces(_scene([(96, 96)]))
    assert len(faces) == 1
    f = faces[0]
    cx, cy = (f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2
    assert abs(cx - 112) <= 16 and abs(cy - 112) <= 16 and f.size_px == 128 and f.score > 0.8
    assert len(f.landmarks) == 5 and abs(f.pose.roll) < 1 and abs(f.pose.yaw) < 1
    ident = eng.encode_references([_scene([(96, 96)])])
    assert ident.vector.shape == (512,) and ident.encoder == "arcface"
    same = eng.score_identity({"a": ident.vector}, _scene([(96, 96)]))
    assert same.matches[0].raw == pytest.approx(1.0, abs=1e-6) and same.matches[0].verdict == "golden"
    empty = eng.score_identity({"a": ident.vector}, _scene([]))
    assert empty.no_face and empty.matches[0].verdict == "no_face"
    two = eng.score_identity({"a": ident.vector, "b": ident.vector}, _scene([(96, 96), (416, 416)]))
    assert two.face_count == 2 and {m.face_index for m in two.matches} == {0, 1}
    with pytest.raises(PreconditionFailed, match="no face found in reference image 0"):
        eng.encode_references([_scene([])])

    # scenes scored together: one forward pass over all their faces, each scene's answer as if alone
    batch = eng.score_identity_many(
        [
            ({"a": ident.vector}, _scene([(96, 96)]), None, None),
            ({"a": ident.vector}, _scene([]), None, None),
            ({"a": ident.vector, "b": ident.vector}, _scene([(96, 96), (416, 416)]), None, None),
        ]
    )
    alone = [same, empty, two]
    for outcome, single in zip(batch, alone, strict=True):
        got = outcome.result()
        assert got.face_count == single.face_count
        assert [(m.face_index, m.verdict) for m in got.matches] == [
            (m.face_index, m.verdict) for m in single.matches
        ]
        assert [m.raw for m in got.matches] == pytest.approx([m.raw for m in single.matches], abs=1e-5)


def test_encoder_is_cached_per_settings(model_dir) -> None:
    s = IdentitySettings(encoder="arcface", model_dir=model_dir)
    assert get_encoder(s) is get_encoder(IdentitySettings(encoder="arcface", model_dir=model_dir))


def test_missing_model_dir(tmp_path) -> None:
    with pytest.raises(Unavailable, match="needs IDLOCK_IDENTITY_MODEL_DIR"):
        ArcFaceEncoder(IdentitySettings(encoder="arcface"))
    with pytest.raises(Unavailable, match="does not exist"):
        ArcFaceEncoder(IdentitySettings(encoder="arcface", model_dir=tmp_path / "nope"))
    with pytest.raises(Unavailable, match="recognition model w600k_r50.onnx not found"):
        ArcFaceEncoder(IdentitySettings(encoder="arcface", model_dir=tmp_path))


def test_providers(monkeypatch) -> None:
    cuda_built = "CUDAExecutionProvider" in ort.get_available_providers()
    for driver in (True, False):
        monkeypatch.setattr(encoders, "nvidia_driver", lambda driver=driver: driver)
        auto = onnx_providers("auto")
        assert auto[-1] == "CPUExecutionProvider"
        # CUDA first when onnxruntime has it and a driver is here; without a driver it is not asked for at all
        assert (auto[0] == "CUDAExecutionProvider") == (cuda_built and driver)
    assert onnx_providers("CPUExecutionProvider") == ["CPUExecutionProvider"]
    with pytest.raises(Unavailable, match="not available"):
        onnx_providers("NoSuchExecutionProvider")


def _cuda_cannot_start(rec_only_dir) -> None:
    """Skip unless this onnxruntime lists CUDA and cannot start it (a CUDA build on a machine without a GPU, or
    without its libraries): the case of a GPU pod whose CUDA is broken."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider")
    session = ort.InferenceSession(
        str(rec_only_dir / "w600k_r50.onnx"), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    if "CUDAExecutionProvider" in session.get_providers():
        pytest.skip("CUDA works here")


def test_an_explicit_cuda_provider_that_cannot_start_stops_the_encoder(rec_only_dir) -> None:
    _cuda_cannot_start(rec_only_dir)
    for setting in ("CUDAExecutionProvider", "CUDAExecutionProvider,CPUExecutionProvider"):
        with pytest.raises(Unavailable) as refused:
            ArcFaceEncoder(
                IdentitySettings(encoder="arcface", model_dir=rec_only_dir, onnx_providers=setting)
            )
        said = str(refused.value)
        assert f"IDLOCK_IDENTITY_ONNX_PROVIDERS={setting} asks for CUDAExecutionProvider" in said
        assert "could not start its CUDA provider" in said and "would run on CPUExecutionProvider" in said


def test_auto_says_when_cuda_falls_back_to_the_cpu(rec_only_dir, monkeypatch, caplog) -> None:
    _cuda_cannot_start(rec_only_dir)
    monkeypatch.setattr(encoders, "nvidia_driver", lambda: True)  # a driver, but CUDA cannot start
    with caplog.at_level(logging.WARNING, logger="idlock.faces"):
        enc = ArcFaceEncoder(
            IdentitySettings(encoder="arcface", model_dir=rec_only_dir, onnx_providers="auto")
        )
    # what the encoder reports is what its session runs on, not what was asked for
    assert enc.providers == ["CPUExecutionProvider"] and enc.runs_on == "CPUExecutionProvider"
    assert any("could not start its CUDA provider" in r.getMessage() for r in caplog.records)
    assert enc.embed_aligned([np.zeros((112, 112, 3), np.uint8)]).shape == (1, 512)


def test_without_a_driver_auto_asks_for_the_cpu_only(rec_only_dir, monkeypatch, caplog) -> None:
    monkeypatch.setattr(encoders, "nvidia_driver", lambda: False)
    with caplog.at_level(logging.WARNING, logger="idlock.faces"):
        enc = ArcFaceEncoder(
            IdentitySettings(encoder="arcface", model_dir=rec_only_dir, onnx_providers="auto")
        )
    assert enc.providers == ["CPUExecutionProvider"] and not caplog.records


@pytest.mark.gpu
def test_cuda_provider_used_when_present(rec_only_dir) -> None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA provider here")
    enc = ArcFaceEncoder(IdentitySettings(encoder="arcface", model_dir=rec_only_dir))
    if enc.rec.session.get_providers()[0] != "CUDAExecutionProvider":
        pytest.skip(
            f"CUDA provider listed but no usable GPU (session uses {enc.rec.session.get_providers()})"
        )
    embs = enc.embed_aligned([np.zeros((112, 112, 3), np.uint8)] * 64)
    assert embs.shape == (64, 512)
