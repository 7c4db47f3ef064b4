"""Evaluate an encoder + calibration on labelled face pairs (csv with columns a,b,same; paths relative to the csv).

Every image is decoded and embedded once (largest face), then each pair is scored. Reported: accuracy of the
calibrated pass threshold as the same/different decision, ROC AUC and EER of the raw cosine, calibrated IDR
percentiles per class, images without a face and throughput (faces embedded per second, decode included).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idlock.errors import IdlockError, InvalidInput
from idlock.faces.engine import IdentityEngine
from idlock.images import load_image


@dataclass
class PairScores:
    pairs: int
    labels: np.ndarray  # 1 same, 0 different (scored pairs only)
    raw: np.ndarray  # raw cosine (scored pairs only)
    no_face: list[str]
    faces: int
    embed_seconds: float


def read_pairs(csv_path: str | Path) -> list[tuple[Path, Path, int]]:
    p = Path(csv_path)
    if not p.is_file():
        raise InvalidInput(f"pairs file {p} does not exist")
    base = p.parent
    out = []
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"a", "b", "same"} - set(reader.fieldnames or [])
        if missing:
            raise InvalidInput(f"pairs file {p} lacks columns {sorted(missing)} (needs a,b,same)")
        for row in reader:
            out.append((base / row["a"], base / row["b"], int(row["same"])))
    if not out:
        raise InvalidInput(f"pairs file {p} has no pairs")
    return out


def score_pairs(csv_path: str | Path, engine: IdentityEngine) -> PairScores:
    pairs = read_pairs(csv_path)
    images = sorted({a for a, _, _ in pairs} | {b for _, b, _ in pairs})
    emb: dict[Path, np.ndarray | None] = {}
    t0 = time.perf_counter()
    for path in images:
        try:
            face = engine.embed_largest(
                load_image(path, max_pixels=engine.settings.max_pixels), name=str(path)
            )
        except IdlockError:
            face = None
        emb[path] = None if face is None else face.embedding
    seconds = time.perf_counter() - t0
    labels, raw = [], []
    for a, b, same in pairs:
        ea, eb = emb[a], emb[b]
        if ea is None or eb is None:
            continue
        labels.append(same)
        raw.append(float(np.clip(np.dot(ea, eb), -1, 1)))
    no_face = [str(p) for p, e in emb.items() if e is None]
    return PairScores(
        pairs=len(pairs),
        labels=np.array(labels, dtype=int),
        raw=np.array(raw),
        no_face=no_face,
        faces=sum(e is not None for e in emb.values()),
        embed_seconds=seconds,
    )


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Probability that a random same pair scores above a random different pair (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(EER, threshold): the point where false accepts and false rejects are (closest to) equal."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan"), float("nan")
    best = (2.0, 0.0, 0.0)
    for t in np.unique(np.concatenate([pos, neg, [np.inf]])):
        far = float((neg >= t).mean())
        frr = float((pos < t).mean())
        gap = abs(far - frr)
        if gap < best[0]:
            best = (gap, (far + frr) / 2.0, float(t))
    return best[1], best[2]


def _pct(values: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if len(values) else None


def evaluate_pairs(csv_path: str | Path, engine: IdentityEngine) -> dict:
    scores = score_pairs(csv_path, engine)
    cal = engine.calibration(scores.raw) if len(scores.raw) else np.zeros(0)
    cal = np.asarray(cal, dtype=np.float64).reshape(-1)
    labels = scores.labels
    pred = cal >= engine.settings.pass_threshold
    eer, eer_t = equal_error_rate(labels, scores.raw)
    same, diff = cal[labels == 1], cal[labels == 0]
    return {
        "encoder": engine.encoder.name,
        "pairs": scores.pairs,
        "scored": len(labels),
        "no_face": len(scores.no_face),
        "no_face_images": scores.no_face,
        "accuracy": round(float((pred == (labels == 1)).mean()), 4) if len(labels) else None,
        "roc_auc": round(roc_auc(labels, scores.raw), 4),
        "eer": round(eer, 4),
        "eer_raw_threshold": round(eer_t, 4),
        "same_idr_p05": _pct(same, 5),
        "same_idr_p50": _pct(same, 50),
        "diff_idr_p50": _pct(diff, 50),
        "diff_idr_p95": _pct(diff, 95),
        "same_raw_p05": _pct(scores.raw[labels == 1], 5),
        "diff_raw_p95": _pct(scores.raw[labels == 0], 95),
        "pass_threshold": engine.settings.pass_threshold,
        "faces_per_s": round(scores.faces / scores.embed_seconds, 2) if scores.embed_seconds > 0 else None,
    }
