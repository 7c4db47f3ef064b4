"""Copy detection on real photos: `idlock eval pairs` with a `copy` column, on copies built from ../shared/faces
with a seed the shipped threshold was neither fitted on (0) nor reported on (1)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from idlock.faces.copies import CopyThreshold
from services.identity.cli import COPY_JSON_KEYS, JSON_KEYS, eval_app
from services.identity.copy_pairs import COPY_KINDS, build_copy_pairs

runner = CliRunner()


def test_the_shipped_threshold_says_where_it_came_from() -> None:
    t = CopyThreshold.load()
    assert 0.5 < t.threshold < 1
    p = t.provenance
    assert p["script"] == "scripts/fit_copy_threshold.py" and p["highest_non_copy"] < t.threshold
    assert (
        p["held_out_seed_1"]["copy_recall"] >= 0.95
        and p["held_out_seed_1"]["copy_false_positive_rate"] <= 0.02
    )


@pytest.mark.slow
def test_copy_detection_on_real_photos(engine, faces_root, tmp_path) -> None:
    csv_path, pairs = build_copy_pairs(faces_root / "pairs.csv", tmp_path, engine, seed=2)
    kinds = {p.kind for p in pairs if p.copy}
    assert set(COPY_KINDS) <= kinds
    res = runner.invoke(eval_app, ["pairs", str(csv_path), "--json", "--encoder", "dlib"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert tuple(out) == JSON_KEYS + COPY_JSON_KEYS
    assert out["copy_pairs"] >= 7 * 38 and out["copy_negatives"] >= 80
    assert out["copy_recall"] >= 0.95, out
    assert out["copy_false_positive_rate"] <= 0.02, out
    assert out["copy_precision"] >= 0.95, out
    text = runner.invoke(eval_app, ["pairs", str(csv_path), "--encoder", "dlib"])
    assert text.exit_code == 0 and "copy detection" in text.stdout


def test_copy_column_must_be_0_or_1(tmp_path) -> None:
    (tmp_path / "pairs.csv").write_text("a,b,same,copy\na.png,b.png,1,maybe\n")
    res = runner.invoke(eval_app, ["pairs", str(tmp_path / "pairs.csv")])
    assert res.exit_code == 2 and "line 2" in res.output and "copy" in res.output
