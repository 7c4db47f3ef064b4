"""CPU thread pools per process: the cgroup quota is honoured, the libraries are set, the local mesh shares the
machine between its services and lowers their model threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from idlock import threads
from idlock.launch import MODEL_SERVICES, SERVICES, server_module
from idlock.mesh import LocalMesh
from idlock.settings import ModelServiceSettings


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
        assert threads.pool_size() == 1  # what a library sized afterwards reads
        assert threads.limit_cpu_threads(0) == threads.available_cpus() == threads.pool_size()
        monkeypatch.delenv(threads.POOL_VARIABLES[0])  # a process that set no pool: the CPUs it may use
        assert threads.pool_size() == threads.available_cpus()
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


def _mesh_env(tmp_path: Path) -> dict[str, str]:
    """The environment the local mesh gives its services (no NATS started: only its address is read)."""
    mesh = LocalMesh(tmp_path)
    mesh.components["nats"] = type("C", (), {"address": "nats://127.0.0.1:1"})()
    return mesh._env({})


def test_the_local_mesh_gives_each_service_half_the_cpus_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("idlock.mesh.available_cpus", lambda: 8)
    monkeypatch.setenv("IDLOCK_REFINER_CPU_THREADS", "3")
    env = _mesh_env(tmp_path)
    assert env["IDLOCK_MEMORY_CPU_THREADS"] == env["IDLOCK_IDENTITY_CPU_THREADS"] == "4"
    assert env["IDLOCK_REFINER_CPU_THREADS"] == "3"

    monkeypatch.setattr("idlock.mesh.available_cpus", lambda: 1)
    assert _mesh_env(tmp_path)["IDLOCK_ORCHESTRATOR_CPU_THREADS"] == "1"


def test_a_model_pool_lowers_its_own_threads_only() -> None:
    with threads.model_executor(2, "test-model", "idle") as pool:
        assert set(pool.map(lambda _: os.sched_getscheduler(0), range(4))) == {os.SCHED_IDLE}
    with threads.model_executor(1, "test-model", "normal") as pool:
        assert pool.submit(os.sched_getscheduler, 0).result() == os.SCHED_OTHER
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the process and its other threads are left alone


def test_the_local_mesh_lowers_model_threads_unless_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDLOCK_RENDER_MODEL_THREAD_PRIORITY", "normal")
    env = _mesh_env(tmp_path)
    assert (
        env["IDLOCK_IDENTITY_MODEL_THREAD_PRIORITY"] == env["IDLOCK_REFINER_MODEL_THREAD_PRIORITY"] == "idle"
    )
    assert env["IDLOCK_RENDER_MODEL_THREAD_PRIORITY"] == "normal"
    assert "IDLOCK_MEMORY_MODEL_THREAD_PRIORITY" not in env


@pytest.mark.parametrize("service", SERVICES)
def test_model_services_are_the_ones_with_the_setting(service: str) -> None:
    has_setting = issubclass(server_module(service).SETTINGS, ModelServiceSettings)
    assert has_setting == (service in MODEL_SERVICES)
