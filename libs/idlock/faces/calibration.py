"""Calibrated IDR: a logistic map from an encoder's raw cosine to a score on which the seeds' thresholds apply.

calibrated = 1 / (1 + exp(-(slope * raw + intercept)))

The numbers per encoder live in `libs/idlock/faces/calibration_data/<encoder>.json` (fitted by
`scripts/fit_calibration.py` on real same/different pairs, with provenance) and can be overridden by a file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from idlock.errors import Unavailable

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration_data"


@dataclass(frozen=True)
class Calibration:
    encoder: str
    slope: float
    intercept: float
    provenance: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not (self.slope > 0 and math.isfinite(self.slope) and math.isfinite(self.intercept)):
            raise ValueError(f"calibration for {self.encoder}: slope must be positive and finite")

    def __call__(self, raw):
        """Calibrated IDR of a raw cosine (float or array)."""
        z = self.slope * np.asarray(raw, dtype=np.float64) + self.intercept
        out = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
        return float(out) if np.ndim(out) == 0 else out

    def raw_for(self, calibrated: float) -> float:
        """The raw cosine that maps to a calibrated value (inverse)."""
        p = min(max(calibrated, 1e-12), 1 - 1e-12)
        return (math.log(p / (1 - p)) - self.intercept) / self.slope

    def to_json(self) -> dict:
        return {
            "encoder": self.encoder,
            "slope": self.slope,
            "intercept": self.intercept,
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data: dict) -> Calibration:
        return cls(
            encoder=str(data["encoder"]),
            slope=float(data["slope"]),
            intercept=float(data["intercept"]),
            provenance=dict(data.get("provenance", {})),
        )

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        p = Path(path)
        try:
            return cls.from_json(json.loads(p.read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise Unavailable(f"cannot read calibration {p}: {exc}") from exc

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n")


def calibration_for(encoder: str, path: str | Path | None = None) -> Calibration:
    """The calibration for `encoder`: from `path` when given, else the shipped file."""
    cal = Calibration.load(path if path else CALIBRATION_DIR / f"{encoder}.json")
    if cal.encoder != encoder:
        raise Unavailable(f"calibration file is for encoder {cal.encoder!r}, not {encoder!r}")
    return cal
