"""`bench/memory.py --sweep` on a small memory: both engines answer from their own points (the service on Qdrant
Edge must not take the peer's folder for an earlier memory and move it in before the peer is measured), and the run
ends in its RESULT line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_the_memory_sweep_measures_both_engines_on_their_own_points() -> None:
    done = subprocess.run(
        [sys.executable, "bench/memory.py", "--sweep", "400", "--requests", "8", "--embedder", "hashing"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    row = result["sweep"]["400"]
    assert row["characters"] == 20 and row["episodes_per_character"] == 20
    assert row["p95_ms"] > 0 and row["peer_qdrant_local_p95_ms"] > 0
    # the peer searched its own points: 20 characters' semantic vectors, a face and a text vector per episode
    assert row["peer_points"] == 20 + 2 * 400
