"""The GPU benchmark script on a machine without a GPU: `bench/gpu.sh` refuses with exit 2 and says why; its CPU
rehearsal (`--tiny`) runs the same three benches on tiny models, with the extra wheels a GPU image lacks installed
from a folder first (`WHEELS`, as on a machine that cannot reach PyPI), and ends with their RESULT lines."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def gpu_sh(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "bench/gpu.sh", *args],
        check=False,
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def a_wheel(folder: Path, module: str, source: str) -> Path:
    """A minimal pure-Python wheel of one module (what pip needs: METADATA, WHEEL, a RECORD with hashes)."""
    name = f"{module}-1.0-py3-none-any.whl"
    files = {
        f"{module}.py": source,
        f"{module}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n",
        f"{module}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }

    def digest(text: str) -> str:
        raw = hashlib.sha256(text.encode()).digest()
        return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    record = "".join(f"{path},{digest(text)},{len(text.encode())}\n" for path, text in files.items())
    files[f"{module}-1.0.dist-info/RECORD"] = record + f"{module}-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(folder / name, "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)
    return folder / name


def test_gpu_sh_refuses_without_a_cuda_device() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: bench/gpu.sh would run the benchmarks")
    done = gpu_sh()
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no CUDA device" in done.stderr and "PYTHON" in done.stderr and "--tiny" in done.stderr


def test_gpu_sh_refuses_a_wheels_folder_with_no_wheels(tmp_path: Path) -> None:
    done = gpu_sh("--tiny", WHEELS=str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"WHEELS={tmp_path} holds no .whl files" in done.stderr and "gpu_wheels.sh" in done.stderr
    assert "== identity" not in done.stdout  # no bench ran


def test_gpu_sh_rehearses_the_three_benches_with_wheels_installed_first(tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    # a wheel whose `sitecustomize` every Python process imports at start when the wheel's folder is on its path:
    # each bench that runs with the installed wheels first on PYTHONPATH leaves a mark
    marks = tmp_path / "marks"
    marks.mkdir()
    a_wheel(
        wheels,
        "sitecustomize",
        "import os, sys\n"
        "if os.environ.get('PROBE_MARKS'):\n"
        "    open(os.path.join(os.environ['PROBE_MARKS'], str(os.getpid())), 'w').write(' '.join(sys.argv))\n",
    )
    out = tmp_path / "out"
    done = gpu_sh("--tiny", timeout=420, WHEELS=str(wheels), OUT=str(out), PROBE_MARKS=str(marks))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"wheels from {wheels} installed in " in done.stdout
    results = {}
    for line in done.stdout.strip().splitlines()[-3:]:
        bench, _, payload = line.partition(" RESULT ")
        results[bench] = json.loads(payload)
    assert sorted(results) == ["identity", "render_diffusers", "train_lora"]
    assert results["identity"]["mode"] == "gpu" and results["identity"]["ours_faces_per_s"] > 0
    assert results["train_lora"]["tiny"] is True and results["train_lora"]["ours"]["steps_per_s"] > 0
    assert results["render_diffusers"]["device"] == "cpu (--tiny)"
    assert (
        results["render_diffusers"]["images_per_s"] > 0
        and results["render_diffusers"]["lora_images_per_s"] > 0
    )
    for name in results:  # each bench's whole output is kept
        assert "RESULT " in (out / f"{name}.log").read_text()

    started = " ".join(mark.read_text() for mark in marks.iterdir())
    for script in ("bench/identity.py", "bench/train_lora.py", "bench/render_diffusers.py"):
        assert script in started, f"{script} did not run with the wheels on its path: {started}"
    site = done.stdout.split(" installed in ")[1].split(",")[0]
    assert not Path(site).exists()  # the temporary install is removed at the end


def gpu_wheels_sh(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "bench/gpu_wheels.sh", *args],
        check=False,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_gpu_wheels_sh_refuses_an_unknown_option() -> None:
    done = gpu_wheels_sh("--cuda")
    assert done.returncode == 2 and "unknown option --cuda" in done.stderr


def test_gpu_wheels_sh_takes_its_versions_from_the_venv_and_says_which_one_lacks_a_package(
    tmp_path: Path,
) -> None:
    bare = (
        tmp_path / "bare"
    )  # an interpreter with none of the packages: the version of the first cannot be read
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    done = gpu_wheels_sh(str(tmp_path / "wheels"), VENV_PYTHON=str(bare / "bin" / "python"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"diffusers is not installed in {bare}/bin/python" in done.stderr
    assert not (tmp_path / "wheels").exists()  # nothing downloaded


def test_gpu_wheels_sh_help_is_its_header() -> None:
    done = gpu_wheels_sh("--help")
    assert done.returncode == 0
    assert (
        "bash bench/gpu_wheels.sh [DIR] [--onnxruntime-gpu]" in done.stdout
        and "--onnxruntime-gpu:" in done.stdout
    )
    assert "set -euo" not in done.stdout and "#" not in done.stdout
