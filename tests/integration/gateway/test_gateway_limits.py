"""Rate limits that hold across gateway replicas (the buckets live in the shared database) and across accounts
(writes are limited per client address as well as per user)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from idlock.natsd import free_port
from tests.integration.gateway.test_gateway_api import Mesh, assert_error, running

ROOT = Path(__file__).resolve().parents[3]


def _gateway(data_dir: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "IDLOCK_DATA_DIR": str(data_dir),
        "IDLOCK_GATEWAY_PORT": str(port),
        "IDLOCK_GATEWAY_AUTH_RATE_LIMIT_BURST": "2",
        "IDLOCK_GATEWAY_AUTH_RATE_LIMIT_PER_MINUTE": "1",
        "IDLOCK_MEMORY_ADDR": "127.0.0.1:1",
        "IDLOCK_ORCHESTRATOR_ADDR": "127.0.0.1:1",
        "PYTHONPATH": f"{ROOT / 'libs'}{os.pathsep}{ROOT}",
    }
    env.pop("IDLOCK_DATABASE_URL", None)  # both on the data dir's SQLite file
    return subprocess.Popen([sys.executable, "-m", "gateway"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


def test_two_gateway_processes_share_one_limit(tmp_path: Path) -> None:
    ports = [free_port(), free_port()]
    procs = [_gateway(tmp_path, p) for p in ports]
    try:
        deadline = time.monotonic() + 60
        for port in ports:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "gateway did not start"
                time.sleep(0.2)
        creds = {"email": "x@example.com", "password": "wrong password here"}
        codes = [
            httpx.post(f"http://127.0.0.1:{port}/auth/login", json=creds, timeout=10).status_code
            for port in (ports[0], ports[1], ports[0], ports[1])
        ]
        # 2 per address in all: each replica alone would have allowed 2 of its own
        assert codes == [401, 401, 429, 429]
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=20)


async def test_writes_are_limited_per_address_across_accounts(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path, write_ip_rate_limit_burst=2, write_ip_rate_limit_per_minute=1) as api:
        first = await api.user("one@example.com")
        second = await api.user("two@example.com")
        for _ in range(2):
            assert (await api.client.post("/auth/api-keys", headers=first, json={})).status_code == 201
        r = await api.client.post("/auth/api-keys", headers=second, json={})  # another account, same address
        assert_error(r, 429, "rate_limited", "write requests from this address")
        assert int(r.headers["retry-after"]) >= 1
        assert (await api.client.get("/auth/api-keys", headers=second)).status_code == 200  # reads are not
