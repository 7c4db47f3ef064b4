"""Calibration: shipped files, monotonic map, thresholds, settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from idlock.errors import Unavailable
from idlock.faces.calibration import Calibration, calibration_for
from services.identity.settings import IdentitySettings


@pytest.mark.parametrize("encoder", ["dlib", "arcface"])
def test_shipped_calibration_has_provenance(encoder: str) -> None:
    cal = calibration_for(encoder)
    assert cal.encoder == encoder and cal.slope > 0
    for key in ("data", "date", "fit_method", "script"):
        assert cal.provenance.get(key), f"{encoder}.json lacks provenance {key}"


def test_dlib_calibration_is_monotonic_and_places_thresholds_between_classes() -> None:
    cal = calibration_for("dlib")
    raw = np.linspace(-1, 1, 2001)
    out = cal(raw)
    assert np.all(np.diff(out) >= 0) and out[0] < 0.01 and out[-1] > 0.99
    fit = cal.provenance["fit"]
    # the refine..pass band lies between the classes of the fitting data
    assert fit["diff_raw_p95"] < cal.raw_for(0.70) < cal.raw_for(0.75) < fit["same_raw_p05"]
    assert cal.raw_for(0.75) < cal.raw_for(0.85)
    assert abs(cal(cal.raw_for(0.75)) - 0.75) < 1e-9
    assert cal.provenance["n_pairs"] >= 100


def test_calibration_roundtrip_and_errors(tmp_path) -> None:
    cal = Calibration("dlib", 10.0, -5.0, {"data": "x"})
    cal.save(tmp_path / "c.json")
    assert Calibration.load(tmp_path / "c.json") == cal
    assert cal(0.5) == pytest.approx(0.5)
    with pytest.raises(Unavailable, match="is for encoder 'dlib', not 'arcface'"):
        calibration_for("arcface", tmp_path / "c.json")
    (tmp_path / "bad.json").write_text(json.dumps({"encoder": "dlib"}))
    with pytest.raises(Unavailable, match="cannot read calibration"):
        Calibration.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="slope must be positive"):
        Calibration("dlib", -1.0, 0.0)


def test_settings_env_and_validation(monkeypatch) -> None:
    monkeypatch.setenv("IDLOCK_IDENTITY_ENCODER", "arcface")
    monkeypatch.setenv("IDLOCK_IDENTITY_MIN_FACE_PX", "64")
    s = IdentitySettings()
    assert s.encoder == "arcface" and s.min_face_px == 64 and s.pass_threshold == 0.75
    with pytest.raises(ValidationError, match="REFINE_THRESHOLD"):
        IdentitySettings(refine_threshold=0.8, pass_threshold=0.75)
    for name, field in IdentitySettings.model_fields.items():
        assert field.description, f"{name} has no description"
