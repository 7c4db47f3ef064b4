"""Fit the calibrated-IDR logistic for an encoder on labelled real face pairs and write its JSON.

    .venv/bin/python scripts/fit_calibration.py ../shared/faces/pairs.csv --encoder dlib \
        --out libs/idlock/faces/calibration_data/dlib.json

Method (chosen because ~170 pairs with well separated classes make a plain maximum-likelihood logistic degenerate):
1. Raw cosine of every pair (largest face of each image, embedded once).
2. Slope: L2-regularised logistic regression (scikit-learn, C=1, on the standardised cosine), mapped back to raw
   units. If that slope is too shallow for the band between the refine and pass thresholds to fit inside the gap
   between the classes, it is raised to the smallest slope that fits the band twice over.
3. Intercept: the midpoint between the classes (the middle of [diff 95th percentile, same 5th percentile] of raw
   cosine; the EER threshold when those overlap) is mapped to the middle of the refine/pass band
   ((0.70 + 0.75) / 2), so calibrated 0.75 sits between the classes, on the "same" side.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "libs"))

from idlock.faces.calibration import CALIBRATION_DIR, Calibration
from idlock.faces.engine import IdentityEngine
from services.identity.evaluation import equal_error_rate, score_pairs
from services.identity.settings import IdentitySettings

NOTES = {
    "dlib": (
        "cross-check: dlib's published same-person threshold is 0.6 Euclidean distance on its unnormalised "
        "128-d descriptors; their norms were 1.38-1.62 (mean 1.49) on these photos, so that threshold sits at "
        "cosine ~0.91-0.93, where this fit puts the class boundary"
    ),
}


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def fit(raw: np.ndarray, labels: np.ndarray, refine: float, passing: float) -> tuple[float, float, dict]:
    from sklearn.linear_model import LogisticRegression

    mu, sd = float(raw.mean()), float(raw.std()) or 1.0
    lr = LogisticRegression(C=1.0).fit(((raw - mu) / sd)[:, None], labels)
    slope_mle = float(lr.coef_[0][0]) / sd
    intercept_mle = float(lr.intercept_[0]) - float(lr.coef_[0][0]) * mu / sd
    same, diff = raw[labels == 1], raw[labels == 0]
    same_p05, diff_p95 = float(np.percentile(same, 5)), float(np.percentile(diff, 95))
    if same_p05 > diff_p95:
        mid = (same_p05 + diff_p95) / 2.0
        how_mid = "midpoint of [diff raw p95, same raw p05]"
        band_needed = (logit(passing) - logit(refine)) / (same_p05 - diff_p95)
    else:
        mid = equal_error_rate(labels, raw)[1]
        how_mid = "EER threshold (classes overlap at the 5%/95% percentiles)"
        band_needed = 0.0
    slope = max(slope_mle, 2.0 * band_needed)
    target = (logit(refine) + logit(passing)) / 2.0
    intercept = target - slope * mid
    info = {
        "slope_logistic_l2": round(slope_mle, 4),
        "intercept_logistic_l2": round(intercept_mle, 4),
        "slope_raised_to_fit_band": slope > slope_mle,
        "boundary_raw": round(mid, 5),
        "boundary_rule": how_mid,
        "boundary_calibrated": round(1 / (1 + math.exp(-target)), 4),
        "same_raw_p05": round(same_p05, 5),
        "diff_raw_p95": round(diff_p95, 5),
        "same_raw_min": round(float(same.min()), 5),
        "diff_raw_max": round(float(diff.max()), 5),
    }
    return slope, intercept, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pairs_csv", type=Path)
    ap.add_argument("--encoder", default="dlib", choices=["dlib", "arcface"])
    ap.add_argument("--model-dir", type=Path, default=None, help="arcface model folder")
    ap.add_argument(
        "--out", type=Path, default=None, help="default: libs/idlock/faces/calibration_data/<encoder>.json"
    )
    args = ap.parse_args(argv)

    settings = IdentitySettings(encoder=args.encoder, model_dir=args.model_dir)
    # scoring needs no calibration: use an identity-ish placeholder while collecting raw cosines
    engine = IdentityEngine(settings, calibration=Calibration(args.encoder, 1.0, 0.0))
    scores = score_pairs(args.pairs_csv, engine)
    if scores.no_face:
        print(f"warning: no face in {scores.no_face}", file=sys.stderr)
    labels, raw = scores.labels, scores.raw
    slope, intercept, info = fit(raw, labels, settings.refine_threshold, settings.pass_threshold)
    cal_values = 1 / (1 + np.exp(-(slope * raw + intercept)))
    provenance = {
        "data": f"{args.pairs_csv.parent.name}/{args.pairs_csv.name} (real photos; see SOURCES.md beside it)",
        "n_pairs": len(labels),
        "n_same": int(labels.sum()),
        "n_different": int((labels == 0).sum()),
        "images_without_face": len(scores.no_face),
        "date": dt.date.today().isoformat(),
        "fit_method": (
            "logistic on raw cosine: slope from L2-regularised logistic regression (sklearn, C=1, standardised "
            "input; raised if needed so the refine..pass band fits between the classes), intercept placed so the "
            "class boundary maps to the middle of the refine/pass band"
        ),
        "script": "scripts/fit_calibration.py",
        "note": NOTES.get(args.encoder, ""),
        "thresholds": {"refine": settings.refine_threshold, "pass": settings.pass_threshold},
        "fit": info,
        "fitted_metrics": {
            "accuracy_at_pass": round(
                float(((cal_values >= settings.pass_threshold) == (labels == 1)).mean()), 4
            ),
            "same_idr_p05": round(float(np.percentile(cal_values[labels == 1], 5)), 4),
            "diff_idr_p95": round(float(np.percentile(cal_values[labels == 0], 95)), 4),
        },
        "encoder_settings": {
            "detector": settings.detector,
            "upsample": settings.upsample,
            "hog_min_score": settings.hog_min_score,
            "max_side": settings.max_side,
            "num_jitters": settings.num_jitters,
        },
    }
    cal = Calibration(args.encoder, round(slope, 6), round(intercept, 6), provenance)
    out = args.out or CALIBRATION_DIR / f"{args.encoder}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cal.save(out)
    print(json.dumps(cal.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
