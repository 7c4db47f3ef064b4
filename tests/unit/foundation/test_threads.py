"""CPU thread pools per process: the cgroup quota is honoured, the libraries are set, the local mesh shares the
machine between its services."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from idlock import threads
from idlock.mesh import LocalMesh


def test_the_cgroup_quota_caps_the_cpus(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs
    assert threads._cgroup_quota(tmp_path) == 1.5
    assert threads.available_cpus(tmp_path) == min(2, len(os.sched_getaffinity(0)))

    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads._cgroup_quota(tmp_path) is None
    assert threads.available_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_a_cgroup_v1_quota_is_read_too(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads._cgroup_quota(tmp_path) == 0.5
    assert threads.available_cpus(tmp_path) == 1  # never below one
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads._cgroup_quota(tmp_path) is None


def test_limit_sets_the_pools_of_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    import cv2

    before = (torch.get_num_threads(), cv2.getNumThreads())
    for name in threads.POOL_VARIABLES:
        monkeypatch.setenv(name, "7")
    try:
        assert threads.limit_cpu_threads(1) == 1
        assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
        assert all(os.environ[name] == "1" for name in threads.POOL_VARIABLES)
        assert threads.limit_cpu_threads(0) == threads.available_cpus()
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def test_the_local_mesh_gives_each_service_half_the_cpus_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("idlock.mesh.available_cpus", lambda: 8)
    monkeypatch.setenv("IDLOCK_REFINER_CPU_THREADS", "3")
    mesh = LocalMesh(tmp_path)
    mesh.components["nats"] = type("C", (), {"address": "nats://127.0.0.1:1"})()
    env = mesh._env({})
    assert env["IDLOCK_MEMORY_CPU_THREADS"] == env["IDLOCK_IDENTITY_CPU_THREADS"] == "4"
    assert env["IDLOCK_REFINER_CPU_THREADS"] == "3"

    monkeypatch.setattr("idlock.mesh.available_cpus", lambda: 1)
    mesh.components["nats"] = type("C", (), {"address": "nats://127.0.0.1:1"})()
    assert mesh._env({})["IDLOCK_ORCHESTRATOR_CPU_THREADS"] == "1"
