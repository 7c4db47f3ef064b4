"""`idlock up` / `idlock status` as a user runs them: real processes, real nats-server, real health checks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

ROOT = Path(__file__).resolve().parents[2]
IDLOCK = [sys.executable, "-m", "idlock.cli"]
SERVICES = {
    "identity": "idlock.v1.IdentityService",
    "memory": "idlock.v1.MemoryService",
    "render": "idlock.v1.RenderService",
    "refiner": "idlock.v1.RefinerService",
    "trainer": "idlock.v1.TrainerService",
    "orchestrator": "idlock.v1.OrchestratorService",
}


def _status(data_dir: Path) -> tuple[int, dict]:
    proc = subprocess.run(
        [*IDLOCK, "status", "--json", "--data-dir", str(data_dir)],
        check=False,
        capture_output=True,
        text=True,
    )
    try:
        return proc.returncode, json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        return proc.returncode, {}


def test_up_brings_every_component_to_serving_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "mesh"
    env = dict(os.environ, IDLOCK_LOG_JSON="true")
    started = time.monotonic()
    up = subprocess.Popen(
        [*IDLOCK, "up", "--free-ports", "--nats-port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        components: dict = {}
        while time.monotonic() - started < 20:
            assert up.poll() is None, up.stdout.read()
            code, components = _status(data_dir)
            if code == 0 and components:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        assert code == 0, f"not every component SERVING after {elapsed:.1f} s: {components}"
        assert elapsed < 20
        assert set(components) == {"nats", "gateway", *SERVICES}
        assert all(c["status"] == "SERVING" for c in components.values())

        for name, service in SERVICES.items():
            with grpc.insecure_channel(components[name]["address"]) as ch:
                assert service in ProtoReflectionDescriptorDatabase(ch).get_services()
            metrics = httpx.get(components[name]["metrics"], timeout=5)
            assert metrics.status_code == 200 and "# TYPE idlock_rpc_total counter" in metrics.text

        # a service that dies is started again on its address; the mesh stays up (issue #20, 5.)
        os.kill(components["orchestrator"]["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 40
        while True:
            assert up.poll() is None, up.stdout.read()
            code, now = _status(data_dir)
            again = now.get("orchestrator", {})
            if code == 0 and again.get("pid") != components["orchestrator"]["pid"]:
                break
            assert time.monotonic() < deadline, f"the orchestrator was not started again: {now}"
            time.sleep(0.3)
        assert again["status"] == "SERVING" and again["address"] == components["orchestrator"]["address"]

        with grpc.insecure_channel(components["identity"]["address"]) as ch:
            watch = health_pb2_grpc.HealthStub(ch).Watch(
                health_pb2.HealthCheckRequest(service=""), timeout=30
            )
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            up.send_signal(signal.SIGINT)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
        out, _ = up.communicate(timeout=30)
        assert up.returncode == 0, out
        assert "orchestrator had exited; started again" in out
        assert "stopped" in out
        assert f"studio: {components['gateway']['address']}/" in out  # where a person opens the web page
        code, _ = _status(data_dir)
        assert code == 1  # nothing left running
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()


def test_up_names_the_setting_when_the_nats_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [*IDLOCK, "up", "--free-ports", "--nats-port", str(port), "--data-dir", str(tmp_path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
    assert proc.returncode == 1
    assert f"port {port}" in proc.stdout and "IDLOCK_NATS_PORT" in proc.stdout


def test_status_without_a_mesh_says_so(tmp_path: Path) -> None:
    proc = subprocess.run(
        [*IDLOCK, "status", "--data-dir", str(tmp_path)], check=False, capture_output=True, text=True
    )
    assert proc.returncode == 1 and "no mesh is running" in proc.stdout
