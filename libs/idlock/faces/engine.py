"""The face engine, plain Python (no grpc): detect, encode references, score a scene, compare two images. The
identity service serves it; the refiner and the trainer run it in-process to judge their own outputs.

Callers hand bytes (or a `DecodedImage`) to `IdentityEngine`; servicers map the `IdlockError`s raised here to
status codes. Every score is reported raw (cosine of L2-normalised embeddings) and
calibrated (see `calibration.py`); verdicts use the calibrated value.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from idlock.errors import InvalidInput, PreconditionFailed
from idlock.faces.calibration import Calibration, calibration_for
from idlock.faces.cast import assign
from idlock.faces.copies import CopyCheck, CopyThreshold, face_print
from idlock.faces.encoders import FaceEncoder, RawFace, get_encoder, l2_normalize
from idlock.images import DecodedImage, as_rgb, decode_image

from .settings import FaceSettings

ImageInput = bytes | bytearray | memoryview | DecodedImage | np.ndarray

#: at most this many faces of one scene are embedded (largest first)
MAX_SCENE_FACES = 16
BLUR_CROP_PX = 112


@dataclass(frozen=True)
class Pose:
    """Approximate head pose in degrees from the 2-D landmarks (yaw: + = face turned to the image's right)."""

    yaw: float
    pitch: float
    roll: float


@dataclass
class FaceInfo:
    index: int
    box: tuple[float, float, float, float]
    landmarks: list[tuple[float, float]]
    score: float
    size_px: int
    blur: float
    pose: Pose
    embedding: np.ndarray | None = field(default=None, repr=False)
    #: the face's print for copy detection, when asked for
    print: np.ndarray | None = field(default=None, repr=False)


@dataclass
class ReferenceQuality:
    index: int
    face_count: int
    face: FaceInfo
    width: int
    height: int
    multiple_faces: bool = False
    small_face: bool = False
    blurry: bool = False
    #: median calibrated IDR against the other references (None with a single reference)
    consistency: float | None = None
    inconsistent: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class ReferenceIdentity:
    encoder: str
    vector: np.ndarray
    views: np.ndarray
    qualities: list[ReferenceQuality]
    used_indices: list[int]
    inconsistent_indices: list[int]
    #: pairwise raw cosine between the references (n x n)
    pairwise_raw: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.vector.shape[0])


@dataclass
class IdentityMatch:
    character: str
    found: bool
    face_index: int | None = None
    box: tuple[float, float, float, float] | None = None
    raw: float | None = None
    calibrated: float | None = None
    verdict: str = "no_face"
    #: the matched face against the character's reference faces (None: no reference print was given)
    copy: CopyCheck | None = None


@dataclass
class SceneScore:
    face_count: int
    faces: list[FaceInfo]
    matches: list[IdentityMatch]
    width: int
    height: int
    #: faces assigned to no character
    extras: list[int] = field(default_factory=list)
    #: (characters, face) where one face passes for several characters it matches best
    bleeds: list[tuple[list[str], int]] = field(default_factory=list)
    #: every character had a place, and their best faces were at other characters' places
    placement_swapped: bool = False

    @property
    def no_face(self) -> bool:
        return self.face_count == 0

    @property
    def message(self) -> str:
        if self.no_face:
            return "no face was found in the scene"
        return f"{self.face_count} face(s) found"


@dataclass
class Comparison:
    raw: float
    calibrated: float
    verdict: str
    face_a: FaceInfo
    face_b: FaceInfo
    #: b's face against a's, pixel for pixel (is b a near-copy of a?)
    copy: CopyCheck | None = None


@dataclass
class Outcome:
    """One request's answer in a batch: its value, or the error it alone raised."""

    value: Any = None
    error: Exception | None = None

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = l2_normalize(a), l2_normalize(b)
    return float(np.clip(np.dot(a, b), -1.0, 1.0))


def blur_score(rgb: np.ndarray, box: Sequence[float]) -> float:
    """Variance of the Laplacian of the face crop, resized to 112 x 112 gray (higher = sharper)."""
    h, w = rgb.shape[:2]
    x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x1, y1 = min(w, math.ceil(box[2])), min(h, math.ceil(box[3]))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    crop = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    interp = cv2.INTER_AREA if (x1 - x0) > BLUR_CROP_PX else cv2.INTER_LINEAR
    crop = cv2.resize(crop, (BLUR_CROP_PX, BLUR_CROP_PX), interpolation=interp)
    return float(cv2.Laplacian(crop, cv2.CV_64F).var())


def estimate_pose(encoder: FaceEncoder, landmarks: np.ndarray) -> Pose:
    """Rough yaw/pitch/roll from the eyes and the nose: roll from the eye line, yaw from the nose's sideways offset,
    pitch from its drop below the eye line relative to a frontal face (both relative to the eye distance)."""
    left, right, nose = encoder.eyes_nose(np.asarray(landmarks, dtype=np.float64))
    axis = right - left
    iod = float(np.linalg.norm(axis))
    if iod < 1e-6:
        return Pose(0.0, 0.0, 0.0)
    ex = axis / iod
    ey = np.array([-ex[1], ex[0]])
    rel = nose - (left + right) / 2.0
    u = float(np.dot(rel, ex)) / iod
    v = float(np.dot(rel, ey)) / iod
    roll = math.degrees(math.atan2(axis[1], axis[0]))
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, 2.0 * u))))
    # looking up shortens the nose's drop below the eyes, looking down lengthens it (+ = up)
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, 1.0 - v / encoder.nose_drop_frontal))))
    return Pose(round(yaw, 1), round(pitch, 1), round(roll, 1))


class IdentityEngine:
    """The identity operations for one settings object; models come from the module-level cache."""

    def __init__(
        self, settings: FaceSettings | None = None, *, calibration: Calibration | None = None
    ) -> None:
        self.settings = settings or FaceSettings()
        self.encoder = get_encoder(self.settings)
        self.calibration = calibration or calibration_for(
            self.settings.encoder, self.settings.calibration_path
        )
        self.copies = CopyThreshold.load(self.settings.copy_threshold_path)

    # ------------------------------------------------------------------------------------------- helpers
    def pixels(self, image: ImageInput, name: str = "image") -> np.ndarray:
        """RGB uint8 array of an input: bytes are decoded (once) with the configured pixel limit."""
        if isinstance(image, (bytes, bytearray, memoryview)):
            return decode_image(image, max_pixels=self.settings.max_pixels, name=name).pixels
        if image is None:
            raise InvalidInput(f"{name} is empty: no data was given")
        return as_rgb(image)

    def verdict(self, calibrated: float) -> str:
        s = self.settings
        if calibrated > s.golden_threshold:
            return "golden"
        if calibrated >= s.pass_threshold:
            return "pass"
        if calibrated >= s.refine_threshold:
            return "borderline"
        return "refine"

    def _face_info(self, rgb: np.ndarray, i: int, f: RawFace, emb: np.ndarray | None = None) -> FaceInfo:
        return FaceInfo(
            index=i,
            box=tuple(round(float(v), 1) for v in f.box),
            landmarks=[(round(float(x), 1), round(float(y), 1)) for x, y in f.landmarks],
            score=float(f.score),
            size_px=round(min(f.width, f.height)),
            blur=round(blur_score(rgb, f.box), 2),
            pose=estimate_pose(self.encoder, f.landmarks),
            embedding=emb,
        )

    def _analyse(self, rgb: np.ndarray, *, limit: int | None = MAX_SCENE_FACES) -> list[FaceInfo]:
        return self._analyse_many([rgb], limit=limit)[0]

    def _analyse_many(
        self, rgbs: Sequence[np.ndarray], *, limit: int | None = MAX_SCENE_FACES
    ) -> list[list[FaceInfo]]:
        """Detect in each image, then embed every image's faces in one batch."""
        raws = [self.encoder.detect(rgb)[:limit] for rgb in rgbs]
        embs = self.encoder.embed_many(list(zip(rgbs, raws, strict=True)))
        return [
            [self._face_info(rgb, i, f, e[i]) for i, f in enumerate(raw)]
            for rgb, raw, e in zip(rgbs, raws, embs, strict=True)
        ]

    def face_print(self, rgb: np.ndarray, landmarks: Sequence[Sequence[float]]) -> np.ndarray:
        """The face's print for copy detection (see `copies.py`), aligned on the eyes these landmarks give."""
        left, right, _ = self.encoder.eyes_nose(np.asarray(landmarks, dtype=np.float64))
        return face_print(rgb, left, right)

    # ---------------------------------------------------------------------------------------- operations
    def reference_prints(self, images: Sequence[ImageInput]) -> list[np.ndarray | None]:
        """The largest face's print of each reference (None for one without a face), to catch copies of them."""
        out: list[np.ndarray | None] = []
        for i, image in enumerate(images):
            rgb = self.pixels(image, name=f"reference image {i}")
            raw = self.encoder.detect(rgb)
            out.append(self.face_print(rgb, raw[0].landmarks) if raw else None)
        return out

    def detect_faces(self, image: ImageInput, *, embed: bool = False) -> list[FaceInfo]:
        """Faces (largest first): box, 5 landmarks, detector score, size, blur, pose; embeddings when asked."""
        rgb = self.pixels(image)
        if embed:
            return self._analyse(rgb)
        return [self._face_info(rgb, i, f) for i, f in enumerate(self.encoder.detect(rgb))]

    def encode_references(self, images: Sequence[ImageInput]) -> ReferenceIdentity:
        """Canonical identity from 1..max_references images (mean of normalised embeddings, re-normalised)."""
        s = self.settings
        if images is None or len(images) == 0:
            raise InvalidInput("at least one reference image is needed (got 0)")
        if len(images) > s.max_references:
            raise InvalidInput(
                f"at most {s.max_references} reference images are accepted (got {len(images)})"
            )
        qualities: list[ReferenceQuality] = []
        views = []
        for idx, image in enumerate(images):
            rgb = self.pixels(image, name=f"reference image {idx}")
            raw = self.encoder.detect(rgb)
            if not raw:
                raise PreconditionFailed(
                    f"no face found in reference image {idx}", details={"reason": "no_face", "index": idx}
                )
            face = self._face_info(rgb, 0, raw[0])
            q = ReferenceQuality(
                index=idx, face_count=len(raw), face=face, width=rgb.shape[1], height=rgb.shape[0]
            )
            if len(raw) > 1:
                q.multiple_faces = True
                q.warnings.append(f"{len(raw)} faces found; the largest was used")
            if face.size_px < s.min_face_px:
                raise PreconditionFailed(
                    f"face in reference image {idx} is too small: {face.size_px} px < minimum {s.min_face_px} px",
                    details={"reason": "face_too_small", "index": idx, "size_px": face.size_px},
                )
            if face.blur < s.min_blur:
                raise PreconditionFailed(
                    f"face in reference image {idx} is too blurred: sharpness {face.blur:.1f} < minimum {s.min_blur}",
                    details={"reason": "face_too_blurred", "index": idx, "blur": face.blur},
                )
            if face.size_px < 2 * s.min_face_px:
                q.small_face = True
                q.warnings.append(f"small face ({face.size_px} px)")
            if face.blur < 2 * s.min_blur:
                q.blurry = True
                q.warnings.append(f"blurry face (sharpness {face.blur:.1f})")
            face.embedding = self.encoder.embed(rgb, raw[:1])[0]  # only once the face is accepted
            qualities.append(q)
            views.append(face.embedding)
        views_arr = l2_normalize(np.stack(views))
        pairwise = views_arr @ views_arr.T
        n = len(views)
        inconsistent: list[int] = []
        if n >= 2:
            cal = self.calibration(pairwise)
            for i in range(n):
                others = np.delete(cal[i], i)
                qualities[i].consistency = round(float(np.median(others)), 4)
            if n == 2:
                # no majority: the first reference is the anchor, the second is flagged when they disagree
                if qualities[1].consistency < s.consistency_threshold:
                    inconsistent = [1]
            else:
                inconsistent = [q.index for q in qualities if q.consistency < s.consistency_threshold]
        for i in inconsistent:
            qualities[i].inconsistent = True
            qualities[i].warnings.append("looks like a different person than the other references")
        used = [i for i in range(n) if i not in inconsistent]
        if len(used) * 2 <= n:
            # the outliers are not a minority: nothing tells which references are right, so keep them all
            used = list(range(n))
        vector = l2_normalize(views_arr[used].mean(axis=0))
        return ReferenceIdentity(
            encoder=self.encoder.name,
            vector=vector,
            views=views_arr,
            qualities=qualities,
            used_indices=used,
            inconsistent_indices=inconsistent,
            pairwise_raw=pairwise,
        )

    def _check_vector(self, name: str, vec: np.ndarray) -> np.ndarray:
        v = np.asarray(vec, dtype=np.float64).reshape(-1)
        if v.shape[0] != self.encoder.dim:
            raise InvalidInput(
                f"identity vector of {name!r} has {v.shape[0]} dimensions; the {self.encoder.name} encoder "
                f"uses {self.encoder.dim}"
            )
        if not np.all(np.isfinite(v)) or np.linalg.norm(v) < 1e-9:
            raise InvalidInput(f"identity vector of {name!r} is zero or not finite")
        return l2_normalize(v)

    def score_identity(
        self,
        identities: Mapping[str, np.ndarray] | ReferenceIdentity,
        image: ImageInput,
        references: Mapping[str, Sequence[np.ndarray | None]] | None = None,
        placements: Mapping[str, str] | None = None,
    ) -> SceneScore:
        """For each character, its face of the scene (`idlock.faces.cast.assign`: one face per character, held to
        its place when every character has one), raw + calibrated IDR, verdict; with a character's reference prints
        (`reference_prints`), how close the face is to a copy of one."""
        return self.score_identity_many([(identities, image, references, placements)])[0].result()

    def score_identity_many(self, requests: Sequence[tuple]) -> list[Outcome]:
        """`score_identity` of several scenes, each request `(identities, image, references, placements)`, with one
        batched embedding pass over every scene's faces; a request's error is its own outcome, not the batch's."""
        outcomes: list[Outcome] = [Outcome() for _ in requests]
        ready = []
        for k, (identities, image, _, _) in enumerate(requests):
            try:
                if isinstance(identities, ReferenceIdentity):
                    identities = {"character": identities.vector}
                if not identities:
                    raise InvalidInput("at least one identity vector is needed")
                mat = np.stack([self._check_vector(n, identities[n]) for n in identities])
                ready.append((k, list(identities), mat, self.pixels(image, name="scene image")))
            except Exception as e:  # noqa: BLE001 - reported to its own caller
                outcomes[k].error = e
        analysed = self._analyse_many([rgb for *_, rgb in ready])
        for (k, names, mat, rgb), faces in zip(ready, analysed, strict=True):
            _, _, references, placements = requests[k]
            try:
                outcomes[k].value = self._score(names, mat, rgb, faces, references, placements)
            except Exception as e:  # noqa: BLE001
                outcomes[k].error = e
        return outcomes

    def _score(
        self,
        names: list[str],
        mat: np.ndarray,
        rgb: np.ndarray,
        faces: list[FaceInfo],
        references: Mapping[str, Sequence[np.ndarray | None]] | None,
        placements: Mapping[str, str] | None,
    ) -> SceneScore:
        matches = [IdentityMatch(character=n, found=False) for n in names]
        extras: list[int] = []
        bleeds: list[tuple[list[str], int]] = []
        swapped = False
        if faces:
            embs = np.stack([f.embedding for f in faces])
            sims = mat @ embs.T  # characters x faces
            passing = self.settings.pass_threshold
            cast = assign(
                sims,
                [f.box for f in faces],
                [(placements or {}).get(n, "") for n in names],
                passes=lambda s: self.calibration(float(np.clip(s, -1, 1))) >= passing,
            )
            extras, swapped = cast.extras, cast.swapped
            bleeds = [([names[r] for r in rows], c) for rows, c in cast.bleeds]
            for r, c in sorted(cast.faces.items()):
                raw = float(np.clip(sims[r, c], -1, 1))
                cal = self.calibration(raw)
                matches[r] = IdentityMatch(
                    character=names[r],
                    found=True,
                    face_index=int(c),
                    box=faces[c].box,
                    raw=raw,
                    calibrated=cal,
                    verdict=self.verdict(cal),
                )
                prints = (references or {}).get(names[r])
                if prints:
                    own = self.face_print(rgb, faces[c].landmarks)
                    matches[r].copy = self.copies.check(own, prints)
                    if (
                        matches[r].copy is not None
                        and matches[r].copy.near_copy
                        and matches[r].verdict == "golden"
                    ):
                        matches[
                            r
                        ].verdict = "pass"  # golden means a training candidate, which a copy never is
            for m in matches:
                if not m.found:
                    m.verdict = "unmatched"  # more characters than faces: every face went to a better match
        return SceneScore(
            face_count=len(faces),
            faces=faces,
            matches=matches,
            width=rgb.shape[1],
            height=rgb.shape[0],
            extras=extras,
            bleeds=bleeds,
            placement_swapped=swapped,
        )

    def _largest_face(self, image: ImageInput, name: str) -> FaceInfo:
        face = self.embed_largest(image, name)
        if face is None:
            raise PreconditionFailed(f"no face found in {name}", details={"reason": "no_face", "image": name})
        return face

    def compare_images(self, a: ImageInput, b: ImageInput) -> Comparison:
        """Largest face of `a` against the largest face of `b`, as identities and pixel for pixel."""
        fa = self._largest_face(a, "image a")
        fb = self._largest_face(b, "image b")
        raw = cosine(fa.embedding, fb.embedding)
        cal = self.calibration(raw)
        return Comparison(
            raw=raw,
            calibrated=cal,
            verdict=self.verdict(cal),
            face_a=fa,
            face_b=fb,
            copy=self.copies.check(fb.print, [fa.print]),
        )

    def embed_largest(self, image: ImageInput, name: str = "image") -> FaceInfo | None:
        """Largest face with its embedding and print, or None when there is none."""
        rgb = self.pixels(image, name=name)
        faces = self._analyse(rgb, limit=1)
        if not faces:
            return None
        faces[0].print = self.face_print(rgb, faces[0].landmarks)
        return faces[0]


_ENGINES: dict[str, IdentityEngine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(settings: FaceSettings | None = None) -> IdentityEngine:
    """One engine per distinct settings, built once (models are cached by the encoder factory as well)."""
    settings = settings or FaceSettings()
    key = settings.model_dump_json(
        include=set(FaceSettings.model_fields)
    )  # a service's own fields do not matter
    with _ENGINES_LOCK:
        eng = _ENGINES.get(key)
        if eng is None:
            eng = _ENGINES[key] = IdentityEngine(settings)
        return eng
