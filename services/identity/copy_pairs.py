"""Labelled copy pairs built from real photos, to fit and to check copy detection (`idlock eval copy-pairs`).

A copy is a photo put through what an edit model or a careless pipeline does to an input: resized, re-compressed
(JPEG q30-90), cropped, shifted in brightness and colour, rotated a few degrees, pasted onto another background,
or several of these at once. A non-copy is another photo of the same person (the pairs file's `same` pairs).
Two files of the set that are one picture (checked by eye: `SAME_PICTURE`) are a copy pair, not a non-copy.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from idlock.faces.engine import IdentityEngine
from idlock.images import load_image

#: what each copy did to the photo
COPY_KINDS = ("resize", "jpeg", "crop", "colour", "rotate", "paste", "combined")
MAX_SIDE = 1024
#: pairs of `../shared/faces` that are one picture, found by eye (paths as in its pairs.csv)
SAME_PICTURE: dict[frozenset[str], str] = {
    frozenset({"face_recognition_obama/obama.jpg", "face_recognition_obama/obama_small.jpg"}): (
        "obama_small.jpg is a crop of obama.jpg, downscaled"
    ),
}


@dataclass(frozen=True)
class CopyPair:
    a: str
    b: str
    same: int
    copy: int
    kind: str


def _jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]


def _resize(rgb: np.ndarray, f: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
    return cv2.resize(rgb, (max(8, round(w * f)), max(8, round(h * f))), interpolation=interp)


def _paste(rgb: np.ndarray, face_box, background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The head (face box with a margin, feathered ellipse) on a blurred other photo, at a random place."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in face_box)
    bw, bh = x1 - x0, y1 - y0
    x0, y0 = max(0, x0 - bw // 2), max(0, y0 - bh // 2)
    x1, y1 = min(w, x1 + bw // 2), min(h, y1 + bh // 2)
    patch = rgb[y0:y1, x0:x1].astype(np.float32)
    ph, pw = patch.shape[:2]
    side = int(max(pw, ph) * rng.uniform(1.6, 2.4))
    bg = cv2.resize(background, (side, side), interpolation=cv2.INTER_AREA)
    bg = cv2.GaussianBlur(bg, (0, 0), max(3.0, side / 40)).astype(np.float32)  # no face left in it
    mask = np.zeros((ph, pw), np.float32)
    cv2.ellipse(mask, (pw // 2, ph // 2), (int(pw * 0.46), int(ph * 0.47)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, pw * 0.03))[:, :, None]
    oy, ox = int(rng.integers(0, side - ph + 1)), int(rng.integers(0, side - pw + 1))
    region = bg[oy : oy + ph, ox : ox + pw]
    bg[oy : oy + ph, ox : ox + pw] = patch * mask + region * (1 - mask)
    return np.clip(bg, 0, 255).astype(np.uint8)


def copy_variants(
    rgb: np.ndarray, face_box, background: np.ndarray, rng: np.random.Generator
) -> list[tuple[str, np.ndarray]]:
    """One copy of each kind (COPY_KINDS), with random strengths from `rng`."""
    h, w = rgb.shape[:2]
    out: list[tuple[str, np.ndarray]] = [
        ("resize", _resize(rgb, rng.uniform(0.4, 1.5))),
        ("jpeg", _jpeg(rgb, int(rng.integers(30, 91)))),
    ]
    x0, y0, x1, y1 = face_box
    left = int(rng.uniform(0.0, 0.9) * max(0.0, x0))
    top = int(rng.uniform(0.0, 0.9) * max(0.0, y0))
    right = w - int(rng.uniform(0.0, 0.9) * max(0.0, w - x1))
    bottom = h - int(rng.uniform(0.0, 0.9) * max(0.0, h - y1))
    out.append(("crop", rgb[top:bottom, left:right].copy()))
    gain, shift = rng.uniform(0.6, 1.4, 3), rng.uniform(-40, 40, 3)
    out.append(("colour", np.clip(rgb.astype(np.float32) * gain + shift, 0, 255).astype(np.uint8)))
    m = cv2.getRotationMatrix2D((w / 2, h / 2), float(rng.uniform(-6, 6)), 1.0)
    out.append(("rotate", cv2.warpAffine(rgb, m, (w, h), borderMode=cv2.BORDER_REFLECT)))
    out.append(("paste", _paste(rgb, face_box, background, rng)))
    combined = _resize(rgb, rng.uniform(0.5, 0.9))
    combined = np.clip(combined.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20), 0, 255)
    out.append(("combined", _jpeg(combined.astype(np.uint8), int(rng.integers(30, 60)))))
    return out


def load_photo(path: Path) -> np.ndarray:
    rgb = load_image(path).pixels
    longest = max(rgb.shape[:2])
    return _resize(rgb, MAX_SIDE / longest) if longest > MAX_SIDE else rgb


def build_copy_pairs(
    pairs_csv: str | Path, out_dir: str | Path, engine: IdentityEngine, *, seed: int = 1
) -> tuple[Path, list[CopyPair]]:
    """Write copies of every photo in a pairs file (columns a,b,same) under `out_dir` with `pairs.csv` holding
    a,b,same,copy: the file's pairs (copy=0, or 1 when both are one picture) and each photo against
    its copies (copy=1). Photos where `engine` detects no face are skipped."""
    src = Path(pairs_csv)
    base, out = src.parent.resolve(), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with src.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh)]
    photos = sorted({r["a"] for r in rows} | {r["b"] for r in rows})
    pixels = {p: load_photo(base / p) for p in photos}
    rng = np.random.default_rng(seed)
    pairs: list[CopyPair] = []
    for r in rows:
        same = int(r["same"])
        copy = int(frozenset({r["a"], r["b"]}) in SAME_PICTURE)
        pairs.append(
            CopyPair(str(base / r["a"]), str(base / r["b"]), same, copy, "same-picture" if copy else "")
        )
    for i, p in enumerate(photos):
        faces = engine.detect_faces(pixels[p])  # largest first; detection only, no embedding
        if not faces:
            continue
        box = faces[0].box
        background = pixels[photos[(i + 1 + int(rng.integers(len(photos) - 1))) % len(photos)]]
        for kind, img in copy_variants(pixels[p], box, background, rng):
            name = out / f"{Path(p).parent.name}_{Path(p).stem}_{kind}.jpg"
            cv2.imwrite(str(name), np.ascontiguousarray(img[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
            pairs.append(CopyPair(str(base / p), str(name), 1, 1, kind))
    csv_path = out / "pairs.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["a", "b", "same", "copy"])
        for pair in pairs:
            writer.writerow([pair.a, pair.b, pair.same, pair.copy])
    return csv_path, pairs
