"""`idlock demo --video` offline: three video scenes from the compositor, per-frame IDR in the table and the report,
the clips written beside it, and the third video consolidating memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from services.render.video import probe_video

ROOT = Path(__file__).resolve().parents[2]


def test_demo_video_runs_offline_and_reports_frame_idr(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if "GEMINI" not in k and "GOOGLE_API_KEY" not in k}
    proc = subprocess.run(
        [sys.executable, "-m", "idlock.cli", "demo", "--video", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["ok"] and report["media"] == "video" and report["history_episodes"] == 3
    assert report["story_summary"]  # three videos: one consolidation
    for scene in report["scenes"]:
        assert scene["kind"] == "video" and scene["provider_label"] == "offline/compositor"
        assert scene["frames_scored"] >= 2 and len(scene["frame_idrs"]) == scene["frames_scored"]
        assert scene["frame_idrs"][0]["timestamp_s"] == 0.0
        assert all(f["face_found"] and f["idr_calibrated"] >= 0.75 for f in scene["frame_idrs"])
        assert scene["frame_idr_min"] <= scene["frame_idr_mean"]
        assert probe_video((out / scene["video"]).read_bytes()).frames >= 16
    assert "red cloak" in report["scenes"][2]["tags"]["clothing"]
    assert "frame IDR" in proc.stdout and "offline/compositor" in proc.stdout and "0s: 0." in proc.stdout
