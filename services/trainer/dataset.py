"""Dataset builder: golden candidates → a LoRA training set (seed task 2.3).

For each candidate (rated up first, then largest IDR): decode → face check (found, large enough) → sharpness →
perceptual-hash de-duplication against what is already kept; then attribute balancing (no clothing, prop or setting
tag on more than a set share of the images, so an outfit most scenes share does not bind to the trigger word; the
captions name the tags) → a square full frame resized to the training resolution, plus a face-aligned crop (eyes
levelled) of the same size. An image its owner rated up carries a sampling weight. Every image gets a caption file
("a photo of <token> person, <scene tags>"); `metadata.json` holds the statistics: how many were kept, and how
many were dropped and why.

Layout (relative to `lora_datasets/<character>/v<k>/`):
    images/001.png …   captions/001.txt …   metadata.json

The builder is pure (bytes in, files out); the servicer stores the files. The face finder is injected: the
service passes the identity engine's detector; tests pass a plain function.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from idlock.errors import InvalidInput

DUPLICATE = "duplicate"
BLURRED = "blurred"
NO_FACE = "no face"
FACE_TOO_SMALL = "face too small"
UNDECODABLE = "undecodable"
MISSING = "missing image"
BLUR_SIDE = 256


@dataclass(frozen=True)
class Face:
    """A detected face: box (x0, y0, x1, y1) and, when known, the eye centres (image-left eye first)."""

    box: tuple[float, float, float, float]
    left_eye: tuple[float, float] | None = None
    right_eye: tuple[float, float] | None = None

    @property
    def size_px(self) -> float:
        return min(self.box[2] - self.box[0], self.box[3] - self.box[1])


FaceFinder = Callable[[np.ndarray], Sequence[Face]]


@dataclass
class Candidate:
    """A golden image offered to the builder."""

    golden_id: str
    #: None: the stored image is gone (erased)
    image: bytes | None
    job_id: str = ""
    prompt: str = ""
    scene_index: int = 0
    idr: float = 0.0
    tags: list[str] = field(default_factory=list)
    #: the owner rated it up: considered before the others (kept over its duplicates and by the balancing) and
    #: sampled `boost_weight` times as often in training
    boosted: bool = False
    #: the scene's state tags by category (clothing, props, setting, ...): what the balancing counts
    attributes: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class BuildConfig:
    resolution: int = 512
    token: str = "sks"
    min_face_px: int = 64
    min_blur: float = 20.0
    dedup_distance: int = 6
    face_crops: bool = True
    #: no clothing, prop or setting tag on more than this share of the kept images (1: no balancing), so an outfit
    #: most scenes share does not bind to the trigger word
    max_attribute_share: float = 0.5
    #: the balancing never takes the dataset below this many source images (it says so instead)
    balance_min_images: int = 8
    #: sampling weight of an image its owner rated up (the others: 1)
    boost_weight: int = 2


#: the state categories a dataset is balanced over (moods and injuries vary by scene anyway)
BALANCED = ("clothing", "props", "setting")
OVER_REPRESENTED = "over-represented attribute"


@dataclass
class BuiltDataset:
    #: relative path -> bytes (images/NNN.png, captions/NNN.txt, metadata.json)
    files: dict[str, bytes]
    metadata: dict[str, Any]

    @property
    def kept(self) -> int:
        return int(self.metadata["stats"]["kept"])

    def images_and_captions(self) -> tuple[list[bytes], list[str]]:
        out_i, out_c = [], []
        for item in self.metadata["items"]:
            out_i.append(self.files[item["image"]])
            out_c.append(self.files[item["caption"]].decode())
        return out_i, out_c


def sharpness(rgb: np.ndarray, box: Sequence[float] | None = None) -> float:
    """Variance of the Laplacian of the (face) region, resized to 256 px gray; higher is sharper."""
    import cv2

    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box if box is not None else (0, 0, w, h)
    x0, y0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    x1, y1 = min(w, math.ceil(x1)), min(h, math.ceil(y1))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return 0.0
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    gray = cv2.resize(gray, (BLUR_SIDE, BLUR_SIDE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def caption(token: str, tags: Sequence[str], *, face: bool = False) -> str:
    head = f"a close-up photo of {token} person" if face else f"a photo of {token} person"
    clean = []
    for t in tags:
        t = " ".join(str(t).replace(",", " ").split())
        if t and t not in clean:
            clean.append(t)
    return ", ".join([head, *clean])


def square_resize(img: Image.Image, side: int) -> Image.Image:
    """Centre-crop to a square, then resize to side x side."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((side, side), Image.LANCZOS)


def aligned_face(img: Image.Image, face: Face, side: int) -> Image.Image:
    """A square crop around the face, rotated so that the eyes are level, 1.8x the face box."""
    x0, y0, x1, y1 = face.box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    angle = 0.0
    if face.left_eye and face.right_eye:
        (lx, ly), (rx, ry) = face.left_eye, face.right_eye
        angle = math.degrees(math.atan2(ry - ly, rx - lx))
        cx, cy = (lx + rx) / 2, (ly + ry) / 2 + 0.15 * (y1 - y0)
    rotated = img.rotate(angle, resample=Image.BICUBIC, center=(cx, cy))
    half = 0.9 * max(x1 - x0, y1 - y0)
    box = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    return rotated.crop(box).resize((side, side), Image.LANCZOS)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def build_dataset(
    candidates: Sequence[Candidate],
    config: BuildConfig,
    face_finder: FaceFinder | None = None,
    *,
    character_id: str = "",
    version: int = 0,
) -> BuiltDataset:
    """Filter, de-duplicate, crop, caption. Candidates are taken best IDR first, so the better of two duplicates
    is the one kept. Without a face finder the face checks and crops are skipped (and said so in metadata)."""
    import imagehash

    if config.resolution < 8:
        raise InvalidInput(f"resolution must be at least 8, got {config.resolution}")
    dropped: Counter[str] = Counter()
    dropped_items: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    files: dict[str, bytes] = {}
    hashes: list[tuple[Any, str]] = []
    accepted: list[tuple[Candidate, Image.Image, Face | None]] = []
    kept_sources = 0

    def drop(c: Candidate, reason: str, **extra: Any) -> None:
        dropped[reason] += 1
        dropped_items.append({"golden_id": c.golden_id, "job_id": c.job_id, "reason": reason, **extra})

    def add(img: Image.Image, text: str, c: Candidate, kind: str) -> None:
        n = len(items) + 1
        name = f"{n:03d}"
        files[f"images/{name}.png"] = _png(img)
        files[f"captions/{name}.txt"] = text.encode()
        items.append(
            {
                "image": f"images/{name}.png",
                "caption": f"captions/{name}.txt",
                "kind": kind,
                "golden_id": c.golden_id,
                "job_id": c.job_id,
                "prompt": c.prompt,
                "scene_index": c.scene_index,
                "idr": round(float(c.idr), 4),
                "text": text,
                "weight": config.boost_weight if c.boosted else 1,
            }
        )

    for c in sorted(candidates, key=lambda c: (not c.boosted, -c.idr)):
        if c.image is None:
            drop(c, MISSING)
            continue
        try:
            img = Image.open(io.BytesIO(c.image))
            img.load()
            img = img.convert("RGB")
        except Exception as e:  # noqa: BLE001 - any decoder error
            drop(c, UNDECODABLE, detail=f"{type(e).__name__}: {e}"[:200])
            continue
        rgb = np.asarray(img)
        face: Face | None = None
        if face_finder is not None:
            faces = list(face_finder(rgb))
            if not faces:
                drop(c, NO_FACE)
                continue
            face = max(faces, key=lambda f: f.size_px)
            if face.size_px < config.min_face_px:
                drop(c, FACE_TOO_SMALL, face_px=round(face.size_px, 1))
                continue
        sharp = sharpness(rgb, face.box if face else None)
        if sharp < config.min_blur:
            drop(c, BLURRED, sharpness=round(sharp, 2))
            continue
        phash = imagehash.phash(img)
        twin = next((gid for h, gid in hashes if phash - h <= config.dedup_distance), None)
        if twin is not None:
            drop(c, DUPLICATE, duplicate_of=twin, distance=int(min(phash - h for h, _ in hashes)))
            continue
        hashes.append((phash, c.golden_id))
        accepted.append((c, img, face))

    kept, unbalanced = balance([a[0] for a in accepted], config, drop)
    for c, img, face in accepted:
        if c not in kept:
            continue
        kept_sources += 1
        add(square_resize(img, config.resolution), caption(config.token, c.tags), c, "full")
        if face is not None and config.face_crops:
            add(
                aligned_face(img, face, config.resolution),
                caption(config.token, c.tags, face=True),
                c,
                "face",
            )

    metadata = {
        "character_id": character_id,
        "version": version,
        "resolution": config.resolution,
        "token": config.token,
        "stats": {
            "candidates": len(candidates),
            "kept": kept_sources,
            "images": len(items),
            "dropped": dict(sorted(dropped.items())),
        },
        "filters": {
            "min_face_px": config.min_face_px if face_finder else None,
            "min_blur": config.min_blur,
            "dedup_distance": config.dedup_distance,
            "face_check": face_finder is not None,
            "max_attribute_share": config.max_attribute_share,
        },
        "attributes": attribute_shares(kept),
        "unbalanced": unbalanced,
        "items": items,
        "dropped": dropped_items,
    }
    files["metadata.json"] = json.dumps(metadata, indent=2).encode()
    return BuiltDataset(files=files, metadata=metadata)


def _balanced_tags(c: Candidate) -> set[str]:
    return {f"{cat}:{t}" for cat in BALANCED for t in c.attributes.get(cat, []) or []}


def attribute_shares(kept: Sequence[Candidate]) -> dict[str, float]:
    """Share of the kept source images that carry each clothing, prop and setting tag."""
    counts = Counter(tag for c in kept for tag in _balanced_tags(c))
    return {tag: round(n / len(kept), 4) for tag, n in sorted(counts.items())} if kept else {}


def balance(
    ranked: Sequence[Candidate], config: BuildConfig, drop: Callable[..., None]
) -> tuple[list[Candidate], list[str]]:
    """Drop the least preferred images carrying the most over-represented attribute until none is on more than
    `max_attribute_share` of them, never below `balance_min_images`. Returns (kept, attributes still over)."""
    kept = list(ranked)
    while len(kept) > config.balance_min_images and config.max_attribute_share < 1:
        counts = Counter(tag for c in kept for tag in _balanced_tags(c))
        limit = max(1, math.floor(config.max_attribute_share * len(kept)))
        over = sorted(((n, tag) for tag, n in counts.items() if n > limit), reverse=True)
        if not over:
            return kept, []
        n, tag = over[0]
        victim = next(c for c in reversed(kept) if tag in _balanced_tags(c))
        kept.remove(victim)
        drop(victim, OVER_REPRESENTED, attribute=tag, share=round(n / (len(kept) + 1), 4))
    limit = max(1, math.floor(config.max_attribute_share * len(kept))) if kept else 0
    counts = Counter(tag for c in kept for tag in _balanced_tags(c))
    return kept, sorted(tag for tag, n in counts.items() if n > limit and config.max_attribute_share < 1)


def identity_face_finder(engine) -> FaceFinder:
    """Faces from the identity engine (dlib or ArcFace detector), eyes from its 5 landmarks."""

    def find(rgb: np.ndarray) -> list[Face]:
        out = []
        for f in engine.detect_faces(rgb):
            lm = np.asarray(f.landmarks, dtype=np.float64)
            left = right = None
            if len(lm) >= 3:
                a, b, _nose = engine.encoder.eyes_nose(lm)
                left, right = (float(a[0]), float(a[1])), (float(b[0]), float(b[1]))
            out.append(Face(box=tuple(float(v) for v in f.box), left_eye=left, right_eye=right))
        return out

    return find
