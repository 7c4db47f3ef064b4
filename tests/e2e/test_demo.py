"""`idlock demo` as a user runs it: exits 0, writes the contact sheet and a report with the promised keys."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_three_scene_story_offline(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {
        k: v for k, v in __import__("os").environ.items() if "GEMINI" not in k and "GOOGLE_API_KEY" not in k
    }
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "idlock.cli", "demo", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - started < 180
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] and report["history_episodes"] == 3
    assert f"studio: {report['gateway']}/" in proc.stdout
    assert [s["index"] for s in report["scenes"]] == [1, 2, 3]
    for scene in report["scenes"]:
        assert {"provider", "idr_raw", "idr_calibrated", "refined", "tags", "seconds"} <= set(scene)
        assert scene["provider"] == "compositor" and scene["provider_label"] == "offline/compositor"
        assert scene["idr_calibrated"] >= 0.75 and scene["status"] == "succeeded"
        # the compositor's face is the reference photo's, posed: an honest near-copy, regenerated once, flagged
        assert scene["near_copy"] is True and scene["copy_similarity"] >= 0.88, scene
        assert scene["regenerated"] and scene["copy_note"].startswith("flagged"), scene
    assert "armour" in report["scenes"][0]["tags"]["clothing"]
    assert any("cheek" in t for t in report["scenes"][1]["tags"]["injuries"])
    sheet = Image.open(out / report["contact_sheet"])
    assert sheet.width > 4 * 300
    assert "offline/compositor" in proc.stdout and "3 episodes recorded" in proc.stdout
    assert "copy sim." in proc.stdout and "near-copy" in proc.stdout
