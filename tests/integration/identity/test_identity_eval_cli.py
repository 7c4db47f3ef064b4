"""`idlock eval pairs` on the real pairs (the acceptance figures) and on a small generated pairs file."""

from __future__ import annotations

import json

import pytest
from skimage import data as skdata
from typer.testing import CliRunner

from idlock.images import encode_jpeg, encode_png
from services.identity.cli import JSON_KEYS, eval_app

runner = CliRunner()


@pytest.mark.slow
def test_eval_pairs_acceptance_on_real_faces(faces_root) -> None:
    res = runner.invoke(eval_app, ["pairs", str(faces_root / "pairs.csv"), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # exactly one JSON object
    assert tuple(out) == JSON_KEYS
    assert out["no_face"] == 0 and out["scored"] == out["pairs"]
    assert out["accuracy"] >= 0.97
    assert out["same_idr_p05"] >= 0.75
    assert out["diff_idr_p95"] < 0.70
    assert out["roc_auc"] >= 0.97 and out["faces_per_s"] > 0


def test_eval_pairs_text_and_json_on_generated_pairs(tmp_path) -> None:
    a = skdata.astronaut()
    (tmp_path / "a.png").write_bytes(encode_png(a))
    (tmp_path / "b.jpg").write_bytes(encode_jpeg(a[:, ::-1].copy(), quality=80))
    (tmp_path / "c.jpg").write_bytes(encode_jpeg(skdata.coffee()))
    (tmp_path / "pairs.csv").write_text("a,b,same\na.png,b.jpg,1\na.png,c.jpg,0\n")
    res = runner.invoke(eval_app, ["pairs", str(tmp_path / "pairs.csv"), "--json", "--encoder", "dlib"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["pairs"] == 2 and out["scored"] == 1 and out["no_face"] == 1 and out["same_idr_p05"] > 0.85
    text = runner.invoke(eval_app, ["pairs", str(tmp_path / "pairs.csv")])
    assert text.exit_code == 0 and "ROC AUC" in text.stdout and "no face:" in text.stdout


def test_eval_pairs_missing_file(tmp_path) -> None:
    res = runner.invoke(eval_app, ["pairs", str(tmp_path / "nope.csv")])
    assert res.exit_code == 2 and "does not exist" in res.output
