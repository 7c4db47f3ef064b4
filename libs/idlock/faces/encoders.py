"""Face encoders behind one interface: detection (boxes, 5 landmarks, scores) and L2-normalised embeddings.

- `DlibEncoder` (offline default): dlib's HOG (or CNN/MMOD) detector, the 5-point shape predictor and the ResNet
  128-d descriptor, with the weights shipped in the PyPI package `face_recognition_models`. The package is never
  imported (its __init__ runs pkg_resources): its folder is found with importlib's spec.
- `ArcFaceEncoder` (production): InsightFace buffalo_l (SCRFD det_10g.onnx + ArcFace w600k_r50.onnx, 512-d) on
  onnxruntime, CUDA when present, from a mounted model folder. Nothing is downloaded.

All coordinates are in the pixels of the image given to `detect` (RGB uint8, H x W x 3). Models are loaded once per
settings (`get_encoder` caches them at module level).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from idlock.errors import PreconditionFailed, Unavailable

from .settings import FaceSettings

log = logging.getLogger("idlock.faces")


@dataclass
class RawFace:
    """One detected face: box (x0, y0, x1, y1), 5 landmarks (x, y) and detector score, in image pixels."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float
    #: encoder-specific object needed to embed this face (dlib full_object_detection); not part of the API
    handle: Any = field(default=None, repr=False)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.maximum(n, 1e-12)


def _downscale(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / float(max(h, w)))
    if scale >= 1.0:
        return rgb, 1.0
    small = cv2.resize(
        rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    return small, scale


class FaceEncoder(ABC):
    """Common interface of the encoders."""

    name: str
    dim: int
    #: what the 5 landmarks are, in order
    landmark_scheme: str

    @abstractmethod
    def detect(self, rgb: np.ndarray) -> list[RawFace]:
        """Faces in an RGB uint8 image, largest first."""

    @abstractmethod
    def embed(self, rgb: np.ndarray, faces: Sequence[RawFace]) -> np.ndarray:
        """(len(faces), dim) L2-normalised embeddings of faces found in `rgb` by `detect`."""

    def embed_many(self, items: Sequence[tuple[np.ndarray, Sequence[RawFace]]]) -> list[np.ndarray]:
        """`embed` of several images' faces; encoders with a batched forward pass run it once for all of them."""
        return [self.embed(rgb, faces) for rgb, faces in items]

    @abstractmethod
    def eyes_nose(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(eye on the image's left, eye on the image's right, nose) from the 5 landmarks."""

    #: typical (nose below the eye line) / (inter-ocular distance) of a frontal face for this landmark scheme
    nose_drop_frontal: float = 0.6

    @property
    def runs_on(self) -> str:
        """Where the models compute, as the runtime reports it (for operators: a GPU pod on its CPU is slow)."""
        return "CPU"


# --------------------------------------------------------------------------------------------------- dlib


def face_recognition_models_dir() -> Path:
    """Folder holding the .dat weights of the PyPI package face_recognition_models, found without importing it."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable(
            "the dlib encoder needs the PyPI package face_recognition_models (pip install face_recognition_models)"
        )
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    if not models.is_dir():
        raise Unavailable(f"face_recognition_models has no models folder at {models}")
    return models


class DlibEncoder(FaceEncoder):
    name = "dlib"
    dim = 128
    landmark_scheme = "dlib_5: eye A outer, eye A inner, eye B outer, eye B inner, nose base"
    nose_drop_frontal = 0.75

    def __init__(self, settings: FaceSettings) -> None:
        import dlib

        self._dlib = dlib
        models = face_recognition_models_dir()
        self.settings = settings
        if settings.detector == "cnn":
            self._cnn = dlib.cnn_face_detection_model_v1(str(models / "mmod_human_face_detector.dat"))
            self._hog = None
        else:
            self._hog = dlib.get_frontal_face_detector()
            self._cnn = None
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._rec = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        # dlib's models are not documented as thread-safe: serialise calls into them
        self._lock = threading.Lock()

    def _upsample_plan(self, small: np.ndarray) -> list[int]:
        if self.settings.upsample >= 0:
            return [self.settings.upsample]
        # HOG finds faces from ~80 px (upsample 0) / ~40 px (1) / ~20 px (2): start where small images need it
        side = max(small.shape[:2])
        if side < 320:
            return [1, 2]
        return [0, 1, 2] if side <= 1400 else [0, 1]

    def _run_detector(self, small: np.ndarray, upsample: int) -> list[tuple[Any, float]]:
        if self._cnn is not None:
            dets = self._cnn(small, upsample)
            return [(d.rect, float(d.confidence)) for d in dets]
        rects, scores, _ = self._hog.run(small, upsample, 0.0)
        return list(zip(rects, (float(s) for s in scores)))

    @property
    def runs_on(self) -> str:
        return "CUDA (dlib built with CUDA)" if getattr(self._dlib, "DLIB_USE_CUDA", False) else "CPU"

    def detect(self, rgb: np.ndarray) -> list[RawFace]:
        dlib = self._dlib
        rgb = np.ascontiguousarray(rgb)
        small, scale = _downscale(rgb, self.settings.max_side)
        found: list[tuple[Any, float]] = []
        with self._lock:
            for up in self._upsample_plan(small):
                found = self._run_detector(small, up)
                if found:
                    break
            if self._hog is not None and len(found) > 1:
                strong = [d for d in found if d[1] >= self.settings.hog_min_score]
                found = strong or [max(found, key=lambda d: d[1])]
            faces = []
            h, w = rgb.shape[:2]
            for rect, score in found:
                x0, y0 = rect.left() / scale, rect.top() / scale
                x1, y1 = (rect.right() + 1) / scale, (rect.bottom() + 1) / scale
                full = dlib.rectangle(round(x0), round(y0), round(x1), round(y1))
                shape = self._shape(rgb, full)
                pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], dtype=np.float64)
                box = np.array([max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)])
                faces.append(RawFace(box=box, landmarks=pts, score=score, handle=shape))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    def embed(self, rgb: np.ndarray, faces: Sequence[RawFace]) -> np.ndarray:
        if not faces:
            return np.zeros((0, self.dim))
        shapes = self._dlib.full_object_detections()
        for f in faces:
            shapes.append(f.handle)
        with self._lock:
            # one batched forward pass for every face of the image
            descs = self._rec.compute_face_descriptor(
                np.ascontiguousarray(rgb), shapes, num_jitters=self.settings.num_jitters
            )
        return l2_normalize(np.array([np.array(d) for d in descs], dtype=np.float64))

    def embed_many(self, items: Sequence[tuple[np.ndarray, Sequence[RawFace]]]) -> list[np.ndarray]:
        """One descriptor call for the faces of every image (dlib's batch form)."""
        present = [(rgb, faces) for rgb, faces in items if faces]
        if len(present) < 2:
            return super().embed_many(items)
        batches = []
        for _, faces in present:
            shapes = self._dlib.full_object_detections()
            for f in faces:
                shapes.append(f.handle)
            batches.append(shapes)
        with self._lock:
            descs = self._rec.compute_face_descriptor(
                [np.ascontiguousarray(rgb) for rgb, _ in present],
                batches,
                num_jitters=self.settings.num_jitters,
            )
        found = iter(l2_normalize(np.array([np.array(d) for d in ds], dtype=np.float64)) for ds in descs)
        return [next(found) if faces else np.zeros((0, self.dim)) for _, faces in items]

    def eyes_nose(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = landmarks[0:2].mean(axis=0)
        b = landmarks[2:4].mean(axis=0)
        left, right = (a, b) if a[0] <= b[0] else (b, a)
        return left, right, landmarks[4]


# ------------------------------------------------------------------------------------------------ arcface


CUDA = "CUDAExecutionProvider"


def nvidia_driver() -> bool:
    """Whether NVIDIA's driver library loads here. onnxruntime-gpu lists its CUDA provider on any machine; without
    a driver the provider cannot start, and asking for it only logs errors."""
    for name in ("libcuda.so.1", "nvcuda.dll"):
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


def onnx_providers(setting: str) -> list[str]:
    """The providers to ask onnxruntime for: those named, or with "auto" CUDA (when onnxruntime has it and an NVIDIA
    driver is here) before the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if setting and setting != "auto":
        wanted = [p.strip() for p in setting.split(",") if p.strip()]
        missing = [p for p in wanted if p not in available]
        if missing:
            raise Unavailable(f"onnxruntime providers {missing} are not available (available: {available})")
        return wanted
    cuda = [CUDA] if CUDA in available and nvidia_driver() else []
    return cuda + [p for p in ("CPUExecutionProvider",) if p in available]


def load_cuda_libraries() -> None:
    """Load the CUDA and cuDNN libraries of the nvidia-* wheels (torch's), which are not on the loader's path by
    themselves, before onnxruntime's CUDA provider looks for them. What onnxruntime prints is logged instead."""
    import onnxruntime as ort

    if not hasattr(ort, "preload_dlls"):  # before onnxruntime 1.21: the libraries must be on the path
        return
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        ort.preload_dlls()
    if said.getvalue().strip():
        log.info("onnxruntime's CUDA libraries: %s", " ".join(said.getvalue().split()))


def _find_model(model_dir: Path, preferred: str, kind: str) -> Path:
    direct = model_dir / preferred
    if direct.is_file():
        return direct
    hits = sorted(model_dir.rglob(preferred))
    if hits:
        return hits[0]
    raise Unavailable(f"arcface encoder: {kind} model {preferred} not found under {model_dir}")


class ArcFaceEncoder(FaceEncoder):
    """InsightFace buffalo_l: SCRFD detector + ArcFace recognition, through insightface's model classes."""

    name = "arcface"
    dim = 512
    landmark_scheme = "insightface_5: left eye, right eye, nose tip, left mouth corner, right mouth corner"
    nose_drop_frontal = 0.55

    def __init__(self, settings: FaceSettings) -> None:
        if settings.model_dir is None:
            raise Unavailable(
                "the arcface encoder needs IDLOCK_IDENTITY_MODEL_DIR (folder with buffalo_l's models)"
            )
        from insightface.model_zoo import get_model

        self.settings = settings
        model_dir = Path(settings.model_dir)
        if not model_dir.is_dir():
            raise Unavailable(f"arcface model folder {model_dir} does not exist")
        asked = onnx_providers(settings.onnx_providers)
        if CUDA in asked:
            load_cuda_libraries()
        ctx = 0 if CUDA in asked else -1
        rec_path = _find_model(model_dir, "w600k_r50.onnx", "recognition")
        self.rec = get_model(str(rec_path), providers=asked)
        if self.rec is None or getattr(self.rec, "taskname", "") != "recognition":
            raise Unavailable(f"{rec_path} is not an ArcFace recognition model")
        self.rec.prepare(ctx)
        #: what the sessions run on: onnxruntime falls back to the CPU, with a log line only, when CUDA cannot start
        self.providers = list(self.rec.session.get_providers())
        if CUDA in asked and CUDA not in self.providers:
            why = (
                "onnxruntime could not start its CUDA provider (no GPU visible to this process, or its CUDA and "
                "cuDNN libraries not found)"
            )
            if settings.onnx_providers not in ("", "auto"):
                raise Unavailable(
                    f"IDLOCK_IDENTITY_ONNX_PROVIDERS={settings.onnx_providers} asks for {CUDA}, but {why}; "
                    f"the ArcFace models would run on {', '.join(self.providers)}"
                )
            log.warning("arcface: %s: the models run on %s", why, ", ".join(self.providers))
            asked, ctx = self.providers, -1
        self.dim = int(self.rec.output_shape[-1]) if isinstance(self.rec.output_shape[-1], int) else 512
        self.det = None
        try:
            det_path = _find_model(model_dir, "det_10g.onnx", "detection")
        except Unavailable:
            det_path = None
        if det_path is not None:
            self.det = get_model(str(det_path), providers=asked)
            if self.det is None or getattr(self.det, "taskname", "") != "detection":
                raise Unavailable(f"{det_path} is not an SCRFD detection model")
            self.det.prepare(
                ctx, input_size=(settings.det_size, settings.det_size), det_thresh=settings.det_threshold
            )
        self._lock = threading.Lock()

    @property
    def runs_on(self) -> str:
        return ", ".join(self.providers)

    def detect(self, rgb: np.ndarray) -> list[RawFace]:
        if self.det is None:
            raise PreconditionFailed(
                "the arcface model folder has no detector (det_10g.onnx): only aligned crops can be embedded"
            )
        small, scale = _downscale(rgb, self.settings.max_side)
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        with self._lock:
            bboxes, kpss = self.det.detect(bgr, input_size=(self.settings.det_size, self.settings.det_size))
        faces = []
        h, w = rgb.shape[:2]
        for i in range(len(bboxes)):
            x0, y0, x1, y1, score = (float(v) for v in bboxes[i][:5])
            box = np.array(
                [max(0.0, x0 / scale), max(0.0, y0 / scale), min(w, x1 / scale), min(h, y1 / scale)]
            )
            kps = np.asarray(kpss[i], dtype=np.float64) / scale if kpss is not None else np.zeros((5, 2))
            faces.append(RawFace(box=box, landmarks=kps, score=score))
        faces.sort(key=lambda f: f.area, reverse=True)
        return faces

    def align(self, rgb: np.ndarray, face: RawFace) -> np.ndarray:
        """112 x 112 RGB crop aligned on the ArcFace template (insightface's norm_crop)."""
        from insightface.utils import face_align

        size = int(self.rec.input_size[0])
        return face_align.norm_crop(
            np.ascontiguousarray(rgb), landmark=face.landmarks.astype(np.float32), image_size=size
        )

    def embed_aligned(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings of already aligned RGB crops (input size of the model, usually 112 x 112)."""
        if len(crops) == 0:
            return np.zeros((0, self.dim))
        # insightface's get_feat expects BGR (it swaps to RGB itself)
        bgr = [np.ascontiguousarray(c[:, :, ::-1]) for c in crops]
        with self._lock:
            feats = self.rec.get_feat(bgr)
        return l2_normalize(np.asarray(feats, dtype=np.float64).reshape(len(crops), -1))

    def embed(self, rgb: np.ndarray, faces: Sequence[RawFace]) -> np.ndarray:
        return self.embed_aligned([self.align(rgb, f) for f in faces])

    def embed_many(self, items: Sequence[tuple[np.ndarray, Sequence[RawFace]]]) -> list[np.ndarray]:
        """One forward pass over the aligned faces of every image (the batch a GPU is fast at)."""
        crops = [self.align(rgb, f) for rgb, faces in items for f in faces]
        embs = self.embed_aligned(crops)
        out, at = [], 0
        for _, faces in items:
            out.append(embs[at : at + len(faces)] if faces else np.zeros((0, self.dim)))
            at += len(faces)
        return out

    def eyes_nose(self, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = landmarks[0], landmarks[1]
        left, right = (a, b) if a[0] <= b[0] else (b, a)
        return left, right, landmarks[2]


# ---------------------------------------------------------------------------------------------- factory

_CACHE: dict[str, FaceEncoder] = {}
_CACHE_LOCK = threading.Lock()
_MODEL_FIELDS = (
    "encoder",
    "model_dir",
    "onnx_providers",
    "detector",
    "upsample",
    "hog_min_score",
    "max_side",
    "det_threshold",
    "det_size",
    "num_jitters",
)


def encoder_cache_key(settings: FaceSettings) -> str:
    return repr(tuple((k, getattr(settings, k)) for k in _MODEL_FIELDS))


def get_encoder(settings: FaceSettings) -> FaceEncoder:
    """The encoder for these settings, loaded once per process and reused."""
    key = encoder_cache_key(settings)
    with _CACHE_LOCK:
        enc = _CACHE.get(key)
        if enc is None:
            enc = DlibEncoder(settings) if settings.encoder == "dlib" else ArcFaceEncoder(settings)
            _CACHE[key] = enc
        return enc
