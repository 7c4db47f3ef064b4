"""Face repair, plain Python (no grpc): locate the character's face, build candidate repairs, measure them.

Strategies produce a candidate image from the scene and the character's references:
- reference-warp (offline, no model): the best reference face is aligned to the target face's 5 landmarks with a
  similarity (or affine) transform, its colour matched to the target (LAB mean/std), and blended with Poisson
  blending (`cv2.seamlessClone`) or a feathered mask;
- render: the face is cropped with a margin and upscaled (`face_crop`), edited elsewhere (the render service's
  EditImage), and fitted back with a feathered blend (`fit_back`).

Every candidate is scored by the identity engine in-process (the same `IdentityEngine` and calibration as the
identity service) on the face that overlaps the target region, and its blend boundary gets a seam measure.
Only pixels inside the candidate's blend region change; everything else is the input, bit for bit.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from idlock.aged_cache import MISSING, AgedCache
from idlock.errors import InvalidInput, PreconditionFailed
from idlock.faces.copies import CopyCheck
from idlock.faces.engine import FaceInfo, IdentityEngine, IdentityMatch, cosine

#: gradient magnitudes below this (per channel 0..255 Sobel/8 units) count as flat when normalising the seam
_MIN_GRAD = 1.0


@dataclass
class Score:
    raw: float
    calibrated: float
    verdict: str


@dataclass
class Target:
    """The character's face in the input scene."""

    face: FaceInfo
    score: Score
    face_count: int
    #: the input's face against the references (None: no reference prints given)
    copy: CopyCheck | None = None


@dataclass
class RefFace:
    """A reference image and its face (the one most like the character's identity)."""

    rgb: np.ndarray
    face: FaceInfo
    similarity: float


@dataclass
class Candidate:
    """A repaired image and the region its blend touched (uint8 mask, 255 = fully replaced)."""

    image: np.ndarray
    mask: np.ndarray
    notes: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    score: Score | None  # None: no face was found where the target was
    seam: float
    #: the repaired face against the references (the reference warp is a copy by construction)
    copy: CopyCheck | None = None


def landmarks(face: FaceInfo) -> np.ndarray:
    return np.asarray(face.landmarks, dtype=np.float64)


def face_size(face: FaceInfo) -> float:
    x0, y0, x1, y1 = face.box
    return max(8.0, float(max(x1 - x0, y1 - y0)))


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2 x 3 least-squares similarity (rotation, uniform scale, translation) mapping src points onto dst (Umeyama)."""
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var = (s**2).sum() / len(src)
    scale = float((sig * sign).sum() / max(var, 1e-12))
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def affine_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2 x 3 least-squares affine transform mapping src points onto dst."""
    a = np.hstack([src, np.ones((len(src), 1))])
    sol, *_ = np.linalg.lstsq(a, dst, rcond=None)
    return sol.T


def face_ellipse(face: FaceInfo, shape: tuple[int, int], scale: float = 1.0) -> np.ndarray:
    """uint8 mask of an ellipse over the inner face (brows to chin), rotated with the eye line."""
    pts = landmarks(face)
    x0, y0, x1, y1 = face.box
    w, h = x1 - x0, y1 - y0
    cx = float(0.5 * (x0 + x1) / 2 + 0.5 * pts[:, 0].mean())
    cy = float(y0 + 0.55 * h)
    left, right = pts[:2].mean(axis=0), pts[2:4].mean(axis=0)
    if left[0] > right[0]:
        left, right = right, left
    angle = math.degrees(math.atan2(right[1] - left[1], right[0] - left[0]))
    mask = np.zeros(shape, np.uint8)
    axes = (max(2, round(0.46 * w * scale)), max(2, round(0.56 * h * scale)))
    cv2.ellipse(mask, (round(cx), round(cy)), axes, angle, 0, 360, 255, -1, lineType=cv2.LINE_AA)
    return mask


def lab_transfer(src: np.ndarray, dst: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`src` (RGB) with its LAB mean/std inside `mask` matched to `dst`'s inside the same mask."""
    sel = mask > 127
    if sel.sum() < 16:
        return src
    s = cv2.cvtColor(src, cv2.COLOR_RGB2LAB).astype(np.float32)
    d = cv2.cvtColor(dst, cv2.COLOR_RGB2LAB).astype(np.float32)
    out = s.copy()
    for c in range(3):
        sm, ss = s[..., c][sel].mean(), s[..., c][sel].std()
        dm, ds = d[..., c][sel].mean(), d[..., c][sel].std()
        gain = float(np.clip(ds / max(ss, 1e-3), 0.5, 2.0)) if c == 0 else 1.0
        out[..., c] = (s[..., c] - sm) * gain + dm
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def _gradient(gray: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy) / 8.0


def seam_measure(before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> float:
    """Gradient energy the blend added along its boundary, relative to the image around it.

    The boundary is a thin band where the blend weight crosses one half; the measure is the mean of
    max(0, |grad after| - |grad before|) over that band divided by the mean |grad before| over the blend's
    neighbourhood. A seamless blend scores ~0; a hard paste with a colour step scores several units."""
    binary = (mask > 127).astype(np.uint8)
    if binary.sum() == 0:
        return 0.0
    x, y, w, h = cv2.boundingRect(binary)
    pad = max(4, round(0.25 * max(w, h)))
    H, W = binary.shape
    x0, y0, x1, y1 = max(0, x - pad), max(0, y - pad), min(W, x + w + pad), min(H, y + h + pad)
    b = binary[y0:y1, x0:x1]
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    band = cv2.morphologyEx(b, cv2.MORPH_GRADIENT, k) > 0
    if not band.any():
        return 0.0
    g0 = _gradient(
        cv2.cvtColor(np.ascontiguousarray(before[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    )
    g1 = _gradient(
        cv2.cvtColor(np.ascontiguousarray(after[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    )
    excess = np.maximum(0.0, g1 - g0)[band].mean()
    return round(float(excess / max(float(g0.mean()), _MIN_GRAD)), 4)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceRefiner:
    """Locates, repairs and measures faces with an in-process `IdentityEngine`. Thread-safe (the engine
    serialises its model calls); reference faces are cached by content hash, each for at most `cache_max_age_s`."""

    def __init__(
        self,
        engine: IdentityEngine,
        *,
        margin: float = 0.5,
        cache_size: int = 64,
        cache_max_age_s: float = 300.0,
    ) -> None:
        self.engine = engine
        self.margin = margin
        #: a reference photo's pixels and faces, by its sha256
        self.references: AgedCache[bytes, tuple[np.ndarray, list[FaceInfo]]] = AgedCache(
            cache_size, cache_max_age_s
        )

    # ------------------------------------------------------------------------------------------- scoring
    def _score(self, identity: np.ndarray, face: FaceInfo) -> Score:
        raw = cosine(identity, face.embedding)
        cal = self.engine.calibration(raw)
        return Score(raw=round(raw, 6), calibrated=round(float(cal), 6), verdict=self.engine.verdict(cal))

    def reference_prints(self, references: Sequence[bytes]) -> list[np.ndarray | None]:
        """The references' face prints (one per reference, in order), to tell a repair from a pasted copy."""
        return self.engine.reference_prints(list(references))

    def locate(
        self,
        identity: np.ndarray,
        rgb: np.ndarray,
        prints: Sequence[np.ndarray | None] = (),
        target_box: tuple[float, float, float, float] | None = None,
    ) -> Target:
        """The face of the scene matched to the identity (as the identity service's ScoreIdentity assigns it), or
        the one `target_box` overlaps most (a scene of several characters: the face at this character's place)."""
        scene = self.engine.score_identity({"character": identity}, rgb, {"character": list(prints)})
        if scene.no_face:
            raise PreconditionFailed(
                "no face was found in the image: nothing to refine", details={"reason": "no_face"}
            )
        m = scene.matches[0]
        if target_box is not None:
            index = max(range(scene.face_count), key=lambda i: iou(scene.faces[i].box, target_box))
            if iou(scene.faces[index].box, target_box) < 0.3:
                raise PreconditionFailed(
                    "no face of the image is where target_box says: nothing to refine",
                    details={"reason": "no_face_at_target"},
                )
            if index != m.face_index:
                m = self._rescored(identity, rgb, scene.faces[index], prints, index)
        face = scene.faces[m.face_index]
        return Target(
            face=face,
            score=Score(round(m.raw, 6), round(float(m.calibrated), 6), m.verdict),
            face_count=scene.face_count,
            copy=m.copy,
        )

    def _rescored(
        self,
        identity: np.ndarray,
        rgb: np.ndarray,
        face: FaceInfo,
        prints: Sequence[np.ndarray | None],
        index: int,
    ) -> IdentityMatch:
        """A face other than the best match, scored against the identity (and the references' prints)."""
        sc = self._score(identity, face)
        copy = None
        if any(p is not None for p in prints):
            copy = self.engine.copies.check(self.engine.face_print(rgb, face.landmarks), prints)
        return IdentityMatch(
            character="character",
            found=True,
            face_index=index,
            box=face.box,
            raw=sc.raw,
            calibrated=sc.calibrated,
            verdict=sc.verdict,
            copy=copy,
        )

    def region(
        self, face: FaceInfo, shape: tuple[int, ...], margin: float | None = None
    ) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the face box grown by `margin` x face size on each side, clipped to the image."""
        m = self.margin if margin is None else margin
        s = face_size(face)
        x0, y0, x1, y1 = face.box
        H, W = shape[:2]
        return (
            max(0, math.floor(x0 - m * s)),
            max(0, math.floor(y0 - m * s)),
            min(W, math.ceil(x1 + m * s)),
            min(H, math.ceil(y1 + m * s)),
        )

    def evaluate(
        self,
        identity: np.ndarray,
        before: np.ndarray,
        cand: Candidate,
        target: FaceInfo,
        prints: Sequence[np.ndarray | None] = (),
    ) -> Evaluation:
        """Score the face at the target's place in the candidate (detected in a window around it) + seam."""
        seam = seam_measure(before, cand.image, cand.mask)
        x0, y0, x1, y1 = self.region(target, cand.image.shape, margin=0.6)
        window = np.ascontiguousarray(cand.image[y0:y1, x0:x1])
        faces = self.engine.detect_faces(window, embed=True)
        tbox = (target.box[0] - x0, target.box[1] - y0, target.box[2] - x0, target.box[3] - y0)
        best = max(faces, key=lambda f: iou(f.box, tbox), default=None)
        if best is None or iou(best.box, tbox) < 0.3:
            return Evaluation(score=None, seam=seam)
        copy = None
        if any(p is not None for p in prints):
            copy = self.engine.copies.check(self.engine.face_print(window, best.landmarks), prints)
        return Evaluation(score=self._score(identity, best), seam=seam, copy=copy)

    # ------------------------------------------------------------------------------------------ references
    def _faces_of(self, data: bytes, name: str) -> tuple[np.ndarray, list[FaceInfo]]:
        key = hashlib.sha256(data).digest()
        hit = self.references.get(key)
        if hit is not MISSING:
            return hit
        rgb = self.engine.pixels(data, name=name)
        faces = self.engine.detect_faces(rgb, embed=True)
        self.references.put(key, (rgb, faces))
        return rgb, faces

    def reference_faces(self, identity: np.ndarray, references: list[bytes]) -> list[RefFace]:
        """Faces of the references, most similar to the identity first (one per reference image)."""
        out: list[RefFace] = []
        for i, data in enumerate(references):
            rgb, faces = self._faces_of(data, f"reference image {i}")
            if not faces:
                continue
            best = max(faces, key=lambda f: cosine(identity, f.embedding))
            out.append(RefFace(rgb=rgb, face=best, similarity=cosine(identity, best.embedding)))
        out.sort(key=lambda r: r.similarity, reverse=True)
        return out

    # ---------------------------------------------------------------------------------------- reference-warp
    def reference_warp(
        self,
        rgb: np.ndarray,
        target: FaceInfo,
        ref: RefFace,
        *,
        transform: str = "similarity",
        blend: str = "poisson",
    ) -> Candidate:
        """Align `ref`'s face onto the target's landmarks, match colour, blend inside an ellipse over the face."""
        src_pts, dst_pts = landmarks(ref.face), landmarks(target)
        m = (
            affine_transform(src_pts, dst_pts)
            if transform == "affine"
            else similarity_transform(src_pts, dst_pts)
        )
        x0, y0, x1, y1 = self.region(target, rgb.shape)
        roi = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        h, w = roi.shape[:2]
        m_roi = m.copy()
        m_roi[:, 2] -= (x0, y0)
        warped = cv2.warpAffine(ref.rgb, m_roi, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        valid = cv2.warpAffine(
            np.full(ref.rgb.shape[:2], 255, np.uint8), m_roi, (w, h), flags=cv2.INTER_NEAREST
        )
        local = FaceInfo(
            index=target.index,
            box=(target.box[0] - x0, target.box[1] - y0, target.box[2] - x0, target.box[3] - y0),
            landmarks=[(px - x0, py - y0) for px, py in target.landmarks],
            score=target.score,
            size_px=target.size_px,
            blur=target.blur,
            pose=target.pose,
        )
        mask = face_ellipse(local, (h, w))
        mask = cv2.min(mask, cv2.erode(valid, np.ones((5, 5), np.uint8)))
        # keep the blend off the region's border (seamlessClone needs a frame of unmasked pixels)
        mask[:2, :], mask[-2:, :], mask[:, :2], mask[:, -2:] = 0, 0, 0, 0
        if (mask > 127).sum() < 64:
            raise PreconditionFailed("the reference face does not cover the target face after alignment")
        warped = lab_transfer(warped, roi, mask)
        if blend == "poisson":
            bx, by, bw, bh = cv2.boundingRect((mask > 127).astype(np.uint8))
            binary = np.where(mask > 127, 255, 0).astype(np.uint8)
            out = cv2.seamlessClone(warped, roi, binary, (bx + bw // 2, by + bh // 2), cv2.NORMAL_CLONE)
            weight = binary
        else:
            sigma = max(1.0, 0.06 * face_size(target))
            weight = cv2.GaussianBlur(cv2.erode(mask, np.ones((3, 3), np.uint8)), (0, 0), sigma)
            a = weight.astype(np.float32)[..., None] / 255.0
            out = np.clip(warped * a + roi * (1 - a) + 0.5, 0, 255).astype(np.uint8)
        full = rgb.copy()
        full[y0:y1, x0:x1] = np.where(weight[..., None] > 0, out, roi)
        full_mask = np.zeros(rgb.shape[:2], np.uint8)
        full_mask[y0:y1, x0:x1] = weight
        return Candidate(image=full, mask=full_mask, notes=[f"{transform} transform, {blend} blend"])

    # -------------------------------------------------------------------------------------------- render
    def face_crop(
        self, rgb: np.ndarray, target: FaceInfo, *, margin: float, size: int, upscaler=None
    ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
        """(upscaled square crop, its face mask, crop box in the scene) for an edit model."""
        s = face_size(target)
        cx, cy = (target.box[0] + target.box[2]) / 2, (target.box[1] + target.box[3]) / 2
        half = s * (0.5 + margin)
        H, W = rgb.shape[:2]
        x0, y0 = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
        x1, y1 = min(W, math.ceil(cx + half)), min(H, math.ceil(cy + half))
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        if crop.shape[0] < 8 or crop.shape[1] < 8:
            raise PreconditionFailed("the face is too small to crop for re-rendering")
        f = size / max(crop.shape[:2])
        out_size = (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f)))
        big = upscaler(crop, out_size) if upscaler is not None else upscale(crop, out_size)
        local = FaceInfo(
            index=0,
            box=tuple((v - o) * f for v, o in zip(target.box, (x0, y0, x0, y0), strict=True)),
            landmarks=[((px - x0) * f, (py - y0) * f) for px, py in target.landmarks],
            score=target.score,
            size_px=target.size_px,
            blur=target.blur,
            pose=target.pose,
        )
        mask = face_ellipse(local, big.shape[:2], scale=1.1)
        return big, mask, (x0, y0, x1, y1)

    def fit_back(
        self, rgb: np.ndarray, edited: np.ndarray, box: tuple[int, int, int, int], target: FaceInfo
    ) -> Candidate:
        """Resize the edited crop to its box and blend it over the face with a feathered ellipse."""
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        small = cv2.resize(
            edited, (w, h), interpolation=cv2.INTER_AREA if edited.shape[1] > w else cv2.INTER_LINEAR
        )
        roi = rgb[y0:y1, x0:x1]
        local = FaceInfo(
            index=0,
            box=(target.box[0] - x0, target.box[1] - y0, target.box[2] - x0, target.box[3] - y0),
            landmarks=[(px - x0, py - y0) for px, py in target.landmarks],
            score=target.score,
            size_px=target.size_px,
            blur=target.blur,
            pose=target.pose,
        )
        mask = face_ellipse(local, (h, w), scale=1.05)
        mask[:2, :], mask[-2:, :], mask[:, :2], mask[:, -2:] = 0, 0, 0, 0
        weight = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.05 * face_size(target)))
        a = weight.astype(np.float32)[..., None] / 255.0
        out = np.clip(small * a + roi * (1 - a) + 0.5, 0, 255).astype(np.uint8)
        full = rgb.copy()
        full[y0:y1, x0:x1] = np.where(weight[..., None] > 0, out, roi)
        full_mask = np.zeros(rgb.shape[:2], np.uint8)
        full_mask[y0:y1, x0:x1] = weight
        return Candidate(image=full, mask=full_mask)


def upscale(crop: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lanczos resize + an unsharp mask (the default when no super-resolution model is mounted)."""
    big = cv2.resize(
        crop, size, interpolation=cv2.INTER_LANCZOS4 if size[0] > crop.shape[1] else cv2.INTER_AREA
    )
    if size[0] <= crop.shape[1]:
        return big
    blur = cv2.GaussianBlur(big, (0, 0), 1.2)
    return cv2.addWeighted(big, 1.5, blur, -0.5, 0)


class SuperResolution:
    """A super-resolution model mounted as a file (OpenCV dnn_superres: EDSR/ESPCN/FSRCNN/LapSRN .pb, name and
    scale read from the file name, e.g. ESPCN_x4.pb). Needs opencv-contrib; `unavailable` says why when not."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.unavailable: str | None = None
        self._sr = None
        self._lock = threading.Lock()
        import re
        from pathlib import Path

        p = Path(path)
        m = re.match(r"(?i)(edsr|espcn|fsrcnn|lapsrn)_x(\d)", p.stem)
        if not p.is_file():
            self.unavailable = f"super-resolution model {path} does not exist"
        elif m is None:
            self.unavailable = f"super-resolution model name {p.name} must look like ESPCN_x4.pb"
        elif not hasattr(cv2, "dnn_superres"):
            self.unavailable = "super-resolution needs opencv-contrib (cv2.dnn_superres is missing)"
        else:
            try:
                sr = cv2.dnn_superres.DnnSuperResImpl_create()
                sr.readModel(str(p))
                sr.setModel(m.group(1).lower(), int(m.group(2)))
                self._sr = sr
            except cv2.error as e:
                self.unavailable = f"super-resolution model {path} failed to load: {e}"

    def __call__(self, crop: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if self._sr is None or size[0] <= crop.shape[1]:
            return upscale(crop, size)
        with self._lock:
            big = self._sr.upsample(cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
        return cv2.resize(cv2.cvtColor(big, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA)


def check_identity(engine: IdentityEngine, values, encoder: str) -> np.ndarray:
    """The character's identity vector as the in-process engine needs it."""
    if encoder and encoder != engine.encoder.name:
        raise InvalidInput(
            f"the character's identity was made by encoder {encoder!r}; this refiner scores with "
            f"{engine.encoder.name!r}"
        )
    vec = np.asarray(values, dtype=np.float64).reshape(-1)
    if vec.size == 0:
        raise InvalidInput("the character has no identity vector")
    return engine._check_vector("character", vec)
