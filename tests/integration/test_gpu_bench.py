"""The GPU benchmark script on a machine without a GPU: `bench/gpu.sh` refuses with exit 2 and says why, and the
diffusers render bench it runs works end to end on a tiny pipeline (`--tiny`, CPU), ending in its RESULT line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_sh_refuses_without_a_cuda_device() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: bench/gpu.sh would run the benchmarks")
    done = subprocess.run(
        ["bash", "bench/gpu.sh"],
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no CUDA device" in done.stderr and "PYTHON" in done.stderr


def test_the_diffusers_render_bench_runs_on_a_tiny_pipeline() -> None:
    pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    done = subprocess.run(
        [sys.executable, "bench/render_diffusers.py", "--tiny", "--images", "2"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("RESULT ")
    result = json.loads(last.removeprefix("RESULT "))
    assert result["images_per_s"] > 0 and result["peer_images_per_s"] > 0 and result["lora_images_per_s"] > 0
    assert result["device"] == "cpu (--tiny)" and result["lora_rank"] == 4
