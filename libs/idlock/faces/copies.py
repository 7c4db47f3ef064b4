"""Copy detection: how close an output's face is, pixel for pixel, to a reference photo's face.

IDR rewards an output for looking like the references, so returning a reference (or warping one into the scene)
scores best. A *face print* catches that: the face is aligned on its eyes into a 64 x 64 grey crop, smooth
lighting is removed (difference of Gaussians), the face ellipse is kept and the values are normalised to zero mean
and unit length. Copy similarity is the dot product of two prints (normalised cross-correlation): ~1.0 for a
reference resized, re-compressed, cropped, re-coloured, slightly rotated or pasted onto another background;
much lower for another photo of the same person, whose pose, expression and light differ.

The near-copy threshold is fitted on real photos by `scripts/fit_copy_threshold.py` and shipped with its
provenance in `calibration_data/copy.json`, as the IDR calibration is.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from idlock.errors import Unavailable

PRINT_SIZE = 64
#: where the eye centres land in the aligned crop (fractions of its side)
_EYE_Y, _EYE_LEFT_X, _EYE_RIGHT_X = 0.36, 0.32, 0.68
_FINE_SIGMA, _COARSE_SIGMA = 1.0, 6.0

COPY_THRESHOLD_FILE = Path(__file__).resolve().parent / "calibration_data" / "copy.json"


def _mask() -> np.ndarray:
    yy, xx = np.mgrid[0:PRINT_SIZE, 0:PRINT_SIZE]
    s = PRINT_SIZE
    return (((xx - s / 2) / (s * 0.40)) ** 2 + ((yy - s * 0.52) / (s * 0.48)) ** 2) <= 1.0


_MASK = _mask()


def _eye_transform(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """2 x 3 similarity that maps the two eye centres onto their places in the crop."""
    s = PRINT_SIZE
    src = np.array([left, right], dtype=np.float64)
    dst = np.array([[s * _EYE_LEFT_X, s * _EYE_Y], [s * _EYE_RIGHT_X, s * _EYE_Y]], dtype=np.float64)
    vs, vd = src[1] - src[0], dst[1] - dst[0]
    scale = np.linalg.norm(vd) / max(np.linalg.norm(vs), 1e-6)
    angle = math.atan2(vd[1], vd[0]) - math.atan2(vs[1], vs[0])
    c, si = scale * math.cos(angle), scale * math.sin(angle)
    rot = np.array([[c, -si], [si, c]])
    t = dst[0] - rot @ src[0]
    return np.hstack([rot, t[:, None]])


def aligned_grey(rgb: np.ndarray, left_eye: Sequence[float], right_eye: Sequence[float]) -> np.ndarray:
    """The face aligned on its eyes: a PRINT_SIZE x PRINT_SIZE grey crop (float32, 0..255)."""
    left, right = np.asarray(left_eye, dtype=np.float64), np.asarray(right_eye, dtype=np.float64)
    iod = float(np.linalg.norm(right - left))
    if iod < 2.0:
        return np.zeros((PRINT_SIZE, PRINT_SIZE), np.float32)
    # work on a region around the face, shrunk first so that the warp does not alias
    h, w = rgb.shape[:2]
    centre = (left + right) / 2.0
    half = iod * 2.2
    x0, y0 = max(0, int(centre[0] - half)), max(0, int(centre[1] - half))
    x1, y1 = min(w, math.ceil(centre[0] + half)), min(h, math.ceil(centre[1] + half * 1.3))
    region = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    if region.ndim == 3:
        region = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
    grey = region.astype(np.float32)
    offset = np.array([x0, y0], dtype=np.float64)
    target_iod = PRINT_SIZE * (_EYE_RIGHT_X - _EYE_LEFT_X)
    shrink = 2.0 * target_iod / iod
    if shrink < 1.0 and min(grey.shape[:2]) > 4:
        size = (max(2, round(grey.shape[1] * shrink)), max(2, round(grey.shape[0] * shrink)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        sx, sy = size[0] / region.shape[1], size[1] / region.shape[0]
        left = (left - offset) * [sx, sy]
        right = (right - offset) * [sx, sy]
    else:
        left, right = left - offset, right - offset
    m = _eye_transform(left, right)
    return cv2.warpAffine(
        grey, m, (PRINT_SIZE, PRINT_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


def face_print(rgb: np.ndarray, left_eye: Sequence[float], right_eye: Sequence[float]) -> np.ndarray:
    """Unit-length print of the aligned face: fine detail only (smooth light removed), inside the face ellipse."""
    crop = aligned_grey(rgb, left_eye, right_eye)
    fine = cv2.GaussianBlur(crop, (0, 0), _FINE_SIGMA)
    detail = fine - cv2.GaussianBlur(fine, (0, 0), _COARSE_SIGMA)
    v = detail[_MASK].astype(np.float64)
    v -= v.mean()
    n = float(np.linalg.norm(v))
    return (v / n if n > 1e-6 else v).astype(np.float32)


def best_match(output: np.ndarray, references: Sequence[np.ndarray | None]) -> tuple[float, int]:
    """(highest similarity, index of that reference); (0.0, -1) when no reference has a print."""
    best, index = 0.0, -1
    for i, ref in enumerate(references):
        if ref is None or ref.shape != output.shape:
            continue
        sim = float(np.clip(np.dot(output, ref), -1.0, 1.0))
        if index < 0 or sim > best:
            best, index = sim, i
    return best, index


@dataclass(frozen=True)
class CopyCheck:
    """An output's face against the references' faces: a near-copy is never golden."""

    similarity: float
    near_copy: bool
    reference_index: int
    threshold: float


@dataclass(frozen=True)
class CopyThreshold:
    threshold: float
    provenance: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not (0.0 < self.threshold < 1.0):
            raise ValueError(f"copy threshold must be in (0, 1), got {self.threshold}")

    def check(self, output: np.ndarray, references: Sequence[np.ndarray | None]) -> CopyCheck | None:
        """None when no reference has a face to compare with."""
        sim, index = best_match(output, references)
        if index < 0:
            return None
        return CopyCheck(
            similarity=round(sim, 4),
            near_copy=sim >= self.threshold,
            reference_index=index,
            threshold=self.threshold,
        )

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "provenance": self.provenance}

    @classmethod
    def load(cls, path: str | Path | None = None) -> CopyThreshold:
        p = Path(path) if path else COPY_THRESHOLD_FILE
        try:
            data = json.loads(p.read_text())
            return cls(threshold=float(data["threshold"]), provenance=dict(data.get("provenance", {})))
        except (OSError, ValueError, KeyError) as exc:
            raise Unavailable(f"cannot read the copy threshold {p}: {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")
