"""Robustness: real faces degraded the way generated images are, measured per degradation.

For each identity of the real face set, the identity comes from one clean photo and another photo of the same
person is degraded (the face first brought to ~200 px so that every degradation acts at the same scale). We measure
the detection rate and the same-person verdict rate (calibrated IDR >= pass threshold) per degradation and assert
minimum rates, and that another person's identity does not pass on the degraded faces.

Measured on 2026-11-23 with the dlib encoder (HOG, settings defaults), 9 identities (18 probes for rotation):
detection 1.00 for every degradation; same-person verdict 1.00 for every degradation except occlusion (0.89, 8/9);
false pass 0.00 everywhere. HOG's frontal detector includes rotated components, so +-30 degrees is still found.
The asserted bounds allow one more miss than measured per degradation (1/9 = 0.11), to stay stable across
platforms (BLAS, OpenCV builds): 0.88 where 1.00 was measured, 0.77 for occlusion's same-person rate, and at
most 0.12 false passes. Run with -s to print the figures.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from idlock.faces.engine import IdentityEngine
from idlock.images import decode_image, encode_jpeg

FACE_PX = 200


def _scale_face(pixels: np.ndarray, face_px: float, target: float) -> np.ndarray:
    s = target / face_px
    h, w = pixels.shape[:2]
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    return cv2.resize(pixels, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


def _rotate(pixels: np.ndarray, center: tuple[float, float], angle: float) -> np.ndarray:
    h, w = pixels.shape[:2]
    m = cv2.getRotationMatrix2D(center, angle, 1.0)
    return cv2.warpAffine(pixels, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def degrade(kind: str, pixels: np.ndarray, box: tuple[float, float, float, float]) -> list[np.ndarray]:
    """Degraded versions of `pixels` (face already ~FACE_PX wide at `box`)."""
    x0, y0, x1, y1 = box
    if kind == "clean":
        return [pixels]
    if kind == "small_64px":
        return [_scale_face(pixels, x1 - x0, 64)]
    if kind == "small_40px":
        return [_scale_face(pixels, x1 - x0, 40)]
    if kind == "blur_strong":
        return [cv2.GaussianBlur(pixels, (0, 0), 4.0)]
    if kind == "combined":
        # 64 px face, grayscale, JPEG quality 20: several at once, as a cheap generator would
        small = _scale_face(pixels, x1 - x0, 64)
        g = np.repeat(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
        return [decode_image(encode_jpeg(g, quality=20)).pixels]
    if kind == "jpeg_q20":
        return [decode_image(encode_jpeg(pixels, quality=20)).pixels]
    if kind == "blur":
        return [cv2.GaussianBlur(pixels, (0, 0), 2.0)]
    if kind == "grayscale":
        g = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
        return [np.repeat(g[:, :, None], 3, axis=2)]
    if kind == "rotate_30":
        c = ((x0 + x1) / 2, (y0 + y1) / 2)
        return [_rotate(pixels, c, 30), _rotate(pixels, c, -30)]
    if kind == "occlusion":
        out = pixels.copy()
        # a flat patch over the lower 40% of the face (mouth and chin), like a mask or a hand
        out[int(y1 - 0.4 * (y1 - y0)) : int(y1), int(x0) : int(x1)] = (90, 90, 90)
        return [out]
    raise ValueError(kind)


#: at most this share of degraded faces may pass against another person's identity (measured 0.00)
MAX_FALSE_PASS = 0.12

#: minimum (detection rate, same-person verdict rate) per degradation (measured: 1.00 everywhere, occlusion same 0.89)
MIN_RATES = {
    "clean": (1.0, 1.0),
    "small_64px": (0.88, 0.88),
    "small_40px": (0.88, 0.88),
    "jpeg_q20": (0.88, 0.88),
    "blur": (0.88, 0.88),
    "blur_strong": (0.88, 0.88),
    "grayscale": (0.88, 0.88),
    "rotate_30": (0.88, 0.88),
    "occlusion": (0.88, 0.77),
    "combined": (0.88, 0.88),
}


@pytest.mark.slow
def test_robustness_per_degradation(engine: IdentityEngine, identities, photo) -> None:
    probes = []
    for name, paths in identities.items():
        ref = engine.encode_references([photo(paths[0])])
        img = photo(paths[1]).pixels
        face = engine.detect_faces(img)[0]
        scaled = _scale_face(img, face.box[2] - face.box[0], FACE_PX)
        box = engine.detect_faces(scaled)[0].box
        probes.append((name, ref.vector, scaled, box))
    rates = {}
    for kind in MIN_RATES:
        detected = same = false_pass = total = 0
        for i, (_name, vector, pixels, box) in enumerate(probes):
            other = probes[(i + 1) % len(probes)][1]  # another person's identity
            for img in degrade(kind, pixels, box):
                total += 1
                scene = engine.score_identity({"p": vector, "other": other}, img)
                if scene.no_face:
                    continue
                detected += 1
                by_name = {m.character: m for m in scene.matches}
                same += by_name["p"].verdict in ("pass", "golden")
                # the wrong identity scored against the same face (one face: assignment gives it to "p")
                wrong = engine.calibration(
                    float(np.dot(other, scene.faces[by_name["p"].face_index].embedding))
                )
                false_pass += wrong >= engine.settings.pass_threshold
        rates[kind] = (detected / total, same / total, false_pass / total, total)
    for kind, (det, same, fp, n) in rates.items():
        print(f"{kind:12s} n={n:2d} detection {det:.2f} same-person verdict {same:.2f} false pass {fp:.2f}")
    for kind, (min_det, min_same) in MIN_RATES.items():
        det, same, fp, _ = rates[kind]
        assert fp <= MAX_FALSE_PASS, f"{kind}: another person's identity passed {fp:.2f} of the time"
        assert det >= min_det, f"{kind}: detection rate {det:.2f} < {min_det}"
        assert same >= min_same, f"{kind}: same-person verdict rate {same:.2f} < {min_same}"
