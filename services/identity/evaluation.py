"""Evaluate an encoder + calibration on labelled face pairs (csv with columns a,b,same; paths relative to the csv).

Every image is decoded and embedded once (largest face), then each pair is scored. Reported: accuracy of the
calibrated pass threshold as the same/different decision, ROC AUC and EER of the raw cosine, calibrated IDR
percentiles per class, images without a face and throughput (faces embedded per second, decode included).

With an optional `copy` column (1: b is a near-copy of a), copy detection is measured too: precision, recall and
the false-positive rate of the near-copy flag, the last on same-person pairs that are not copies (the hard case:
another photo of the same person must not be called a copy).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idlock.errors import IdlockError, InvalidInput
from idlock.faces.copies import best_match
from idlock.faces.engine import IdentityEngine
from idlock.images import load_image


@dataclass
class PairScores:
    pairs: int
    labels: np.ndarray  # 1 same, 0 different (scored pairs only)
    raw: np.ndarray  # raw cosine (scored pairs only)
    copy_labels: np.ndarray  # 1 copy, 0 not, -1 not labelled (scored pairs only)
    copy_similarity: np.ndarray  # face-print similarity of b to a (scored pairs only)
    no_face: list[str]
    faces: int
    embed_seconds: float


def read_pairs(csv_path: str | Path) -> list[tuple[Path, Path, int, int]]:
    """(a, b, same, copy) per row; copy is -1 when the file has no `copy` column."""
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
        has_copy = "copy" in (reader.fieldnames or [])
        for n, row in enumerate(reader, start=2):
            try:
                copy = int(row["copy"]) if has_copy else -1
                out.append((base / row["a"], base / row["b"], int(row["same"]), copy))
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"pairs file {p}, line {n}: same and copy must be 0 or 1 ({exc})") from exc
    if not out:
        raise InvalidInput(f"pairs file {p} has no pairs")
    return out


def score_pairs(csv_path: str | Path, engine: IdentityEngine) -> PairScores:
    pairs = read_pairs(csv_path)
    images = sorted({a for a, _, _, _ in pairs} | {b for _, b, _, _ in pairs})
    emb: dict[Path, np.ndarray | None] = {}
    prints: dict[Path, np.ndarray | None] = {}
    t0 = time.perf_counter()
    for path in images:
        try:
            face = engine.embed_largest(
                load_image(path, max_pixels=engine.settings.max_pixels), name=str(path)
            )
        except IdlockError:
            face = None
        emb[path] = None if face is None else face.embedding
        prints[path] = None if face is None else face.print
    seconds = time.perf_counter() - t0
    labels, raw, copy_labels, copy_sim = [], [], [], []
    for a, b, same, copy in pairs:
        ea, eb = emb[a], emb[b]
        if ea is None or eb is None:
            continue
        labels.append(same)
        raw.append(float(np.clip(np.dot(ea, eb), -1, 1)))
        copy_labels.append(copy)
        copy_sim.append(best_match(prints[b], [prints[a]])[0])
    no_face = [str(p) for p, e in emb.items() if e is None]
    return PairScores(
        pairs=len(pairs),
        labels=np.array(labels, dtype=int),
        raw=np.array(raw),
        copy_labels=np.array(copy_labels, dtype=int),
        copy_similarity=np.array(copy_sim),
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


def copy_report(labels: np.ndarray, similarity: np.ndarray, same: np.ndarray, threshold: float) -> dict:
    """Precision, recall and false-positive rate of `similarity >= threshold` as the near-copy flag, on the pairs
    labelled for copies; the false-positive rate is over same-person pairs that are not copies."""
    known = labels >= 0
    lab, sim, sm = labels[known], similarity[known], same[known]
    flag = sim >= threshold
    copies, non_copies = lab == 1, (lab == 0) & (sm == 1)
    tp = int((flag & copies).sum())
    fp_all = int((flag & (lab == 0)).sum())
    return {
        "copy_threshold": threshold,
        "copy_pairs": int(copies.sum()),
        "copy_negatives": int(non_copies.sum()),
        "copy_precision": round(tp / (tp + fp_all), 4) if tp + fp_all else None,
        "copy_recall": round(tp / int(copies.sum()), 4) if copies.any() else None,
        "copy_false_positive_rate": round(float(flag[non_copies].mean()), 4) if non_copies.any() else None,
        "copy_similarity_p05": _pct(sim[copies], 5),
        "non_copy_similarity_p95": _pct(sim[non_copies], 95),
        "non_copy_similarity_max": round(float(sim[non_copies].max()), 4) if non_copies.any() else None,
    }


def evaluate_pairs(csv_path: str | Path, engine: IdentityEngine) -> dict:
    scores = score_pairs(csv_path, engine)
    cal = engine.calibration(scores.raw) if len(scores.raw) else np.zeros(0)
    cal = np.asarray(cal, dtype=np.float64).reshape(-1)
    labels = scores.labels
    pred = cal >= engine.settings.pass_threshold
    eer, eer_t = equal_error_rate(labels, scores.raw)
    same, diff = cal[labels == 1], cal[labels == 0]
    report = {
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
    if (scores.copy_labels >= 0).any():
        report |= copy_report(scores.copy_labels, scores.copy_similarity, labels, engine.copies.threshold)
    return report
