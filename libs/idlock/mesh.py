"""The local mesh: NATS + every service + the gateway as separate processes with the embedded defaults.

Used by `idlock up`, `idlock demo`, the end-to-end tests and the benchmarks.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idlock.launch import MODEL_SERVICES, SERVICES
from idlock.natsd import NatsServer, free_port
from idlock.settings import DEFAULT_PORTS
from idlock.threads import available_cpus

STATE_FILE = "mesh.json"
#: Prometheus ports of `idlock up` with default ports: 9101 identity ... 9107 gateway
METRICS_BASE_PORT = 9101


class MeshError(RuntimeError):
    """The mesh could not start; the message names the component and what to change."""


@dataclass
class Component:
    name: str
    kind: str  # "nats", "grpc" or "http"
    address: str
    pid: int = 0
    status: str = "STARTING"
    log: str = ""
    metrics: str = ""


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def grpc_health(address: str, timeout_s: float = 1.0) -> str:
    with grpc.insecure_channel(address) as ch:
        try:
            reply = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
            return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as err:
            return f"UNREACHABLE ({err.code().name})"


def http_health(url: str, timeout_s: float = 1.0) -> str:
    try:
        r = httpx.get(f"{url}/healthz", timeout=timeout_s)
        return "SERVING" if r.status_code == 200 else f"HTTP {r.status_code}"
    except httpx.HTTPError as err:
        return f"UNREACHABLE ({type(err).__name__})"


@dataclass
class LocalMesh:
    data_dir: Path
    host: str = "127.0.0.1"
    #: an external NATS to use instead of starting one
    nats_url: str = ""
    nats_port: int = 4222
    ports: dict[str, int] = field(default_factory=dict)
    #: pick free ports for everything (tests, demo) instead of the defaults
    free_ports: bool = False
    services: tuple[str, ...] = SERVICES
    gateway: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self.components: dict[str, Component] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._spawned: dict[str, tuple[int, dict[str, str]]] = {}
        self._nats: NatsServer | None = None

    # -- start -------------------------------------------------------------------------------------------
    def _port_for(self, name: str) -> int:
        if name in self.ports:
            return self.ports[name]
        if self.free_ports:
            return free_port(self.host)
        return DEFAULT_PORTS[name]

    def _env(self, addresses: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "IDLOCK_DATA_DIR": str(self.data_dir),
                "IDLOCK_NATS_URL": self.components["nats"].address,
                "IDLOCK_GATEWAY_HOST": self.host,
                "PYTHONUNBUFFERED": "1",
            }
        )
        for name, address in addresses.items():
            env[f"IDLOCK_{name.upper()}_ADDR"] = address
        # every service shares this machine: half its CPUs each keeps the model libraries' pools from
        # oversubscribing it (a setting already in the environment wins)
        threads = str(max(1, available_cpus() // 2))
        for name in self.services:
            env.setdefault(f"IDLOCK_{name.upper()}_CPU_THREADS", threads)
            if name in MODEL_SERVICES:  # and their models give way to every request hop
                env.setdefault(f"IDLOCK_{name.upper()}_MODEL_THREAD_PRIORITY", "idle")
        env.update(self.extra_env)
        return env

    def start(self, timeout_s: float = 60.0) -> LocalMesh:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "logs").mkdir(exist_ok=True)
        try:
            self._start_nats()
            ports = {
                name: self._port_for(name)
                for name in (*self.services, *(["gateway"] if self.gateway else []))
            }
            for name, port in ports.items():
                if port and _port_taken(self.host, port):
                    raise MeshError(
                        f"{name}: port {port} on {self.host} is already taken; set IDLOCK_{name.upper()}_PORT "
                        f"(or `idlock up --{name}-port`) to a free port, or use --free-ports"
                    )
            addresses = {name: f"{self.host}:{port}" for name, port in ports.items() if name != "gateway"}
            env = self._env(addresses)
            for name, port in ports.items():
                self._spawn(name, port, env)
            self._wait_serving(timeout_s)
            self.write_state()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_nats(self) -> None:
        if self.nats_url:
            self.components["nats"] = Component("nats", "nats", self.nats_url, status="EXTERNAL")
            return
        self._nats = NatsServer(self.data_dir / "nats", port=self.nats_port, host=self.host)
        try:
            self._nats.start()
        except Exception as err:
            raise MeshError(str(err)) from err
        pid = self._nats.pid or 0
        self.components["nats"] = Component(
            "nats", "nats", self._nats.url, pid=pid, status="SERVING", log=str(self._nats.log_file)
        )

    def _metrics_port_for(self, name: str, port: int) -> int:
        # one Prometheus endpoint per process; by default next to the service's own port range
        if self.free_ports or port == 0:
            return free_port(self.host)
        return METRICS_BASE_PORT + list(DEFAULT_PORTS).index(name)

    def _spawn(self, name: str, port: int, env: dict[str, str]) -> None:
        self._spawned[name] = (port, env)
        env = dict(env)
        env[f"IDLOCK_{name.upper()}_PORT"] = str(port)
        metrics_port = self._metrics_port_for(name, port)
        env["IDLOCK_METRICS_PORT"] = str(metrics_port)
        module = "gateway" if name == "gateway" else f"services.{name}"
        log_path = self.data_dir / "logs" / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self._procs[name] = proc
        kind = "http" if name == "gateway" else "grpc"
        address = f"http://{self.host}:{port}" if kind == "http" else f"{self.host}:{port}"
        self.components[name] = Component(
            name,
            kind,
            address,
            pid=proc.pid,
            log=str(log_path),
            metrics=f"http://{self.host}:{metrics_port}/metrics",
        )

    def kill(self, name: str) -> None:
        """SIGKILL one component, as a crash would (no graceful shutdown, nothing acked)."""
        proc = self._procs[name]
        proc.kill()
        proc.wait()
        self.components[name].status = "KILLED"

    def respawn(self, name: str, timeout_s: float = 60.0) -> None:
        """Start a component again on its address, with the same configuration, and wait until it serves."""
        self.restart(name)
        self._wait_serving(timeout_s, only={name})

    @property
    def nats_server(self) -> NatsServer | None:
        """The nats-server this mesh started (None with an external one)."""
        return self._nats

    # -- supervision (idlock.supervise) ---------------------------------------------------------------------
    def exited(self) -> dict[str, int]:
        """Services whose process has ended, with their exit codes."""
        return {name: p.returncode for name, p in self._procs.items() if p.poll() is not None}

    def restart(self, name: str) -> None:
        """Start a dead service again on its address, without waiting for it to serve."""
        port, env = self._spawned[name]
        self._spawn(name, port, env)
        self.write_state()

    def _wait_serving(self, timeout_s: float, only: set[str] | None = None) -> None:
        deadline = time.monotonic() + timeout_s
        pending = set(only or self._procs)
        while pending:
            for name in sorted(pending):
                proc, comp = self._procs[name], self.components[name]
                if proc.poll() is not None:
                    raise MeshError(
                        f"{name} exited with code {proc.returncode} during start-up; its log ({comp.log}) ends:\n"
                        + tail(Path(comp.log))
                    )
                comp.status = http_health(comp.address) if comp.kind == "http" else grpc_health(comp.address)
                if comp.status == "SERVING":
                    pending.discard(name)
            if not pending:
                break
            if time.monotonic() > deadline:
                names = ", ".join(sorted(pending))
                raise MeshError(
                    f"not SERVING after {timeout_s:.0f} s: {names}; see the logs in {self.data_dir / 'logs'}"
                )
            time.sleep(0.1)

    # -- state -------------------------------------------------------------------------------------------
    def addresses(self) -> dict[str, str]:
        return {name: c.address for name, c in self.components.items()}

    def write_state(self) -> None:
        doc = {"components": [asdict(c) for c in self.components.values()], "started_at": time.time()}
        (self.data_dir / STATE_FILE).write_text(json.dumps(doc, indent=2))

    def refresh(self) -> None:
        for c in self.components.values():
            if c.kind == "grpc":
                c.status = grpc_health(c.address)
            elif c.kind == "http":
                c.status = http_health(c.address)

    # -- stop --------------------------------------------------------------------------------------------
    def stop(self, grace_s: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every service (they go NOT_SERVING, then drain), then NATS. Returns exit codes."""
        for proc in self._procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        codes: dict[str, int | None] = {}
        for name, proc in self._procs.items():
            try:
                codes[name] = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait()
        self._procs.clear()
        if self._nats is not None:
            self._nats.stop()
            self._nats = None
        state = self.data_dir / STATE_FILE
        if state.exists():
            state.unlink()
        for c in self.components.values():
            c.status = "STOPPED"
        return codes

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_state(data_dir: Path) -> list[Component]:
    path = Path(data_dir) / STATE_FILE
    if not path.exists():
        return []
    return [Component(**c) for c in json.loads(path.read_text())["components"]]


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
