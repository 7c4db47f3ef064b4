"""The fault-injection suite's mesh: real processes (identity, memory, render, orchestrator, nats-server) started by
`idlock.mesh.LocalMesh`, rendering through the fake Gemini server (the official client, so every paid call is
counted where it is made), object storage on a small real filesystem the suite can fill up or make read-only
(where this machine lets it mount one), and helpers to submit a batch and read what became of it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from skimage import data as skdata

from idlock import mesh_auth
from idlock.images import encode_png
from idlock.mesh import LocalMesh
from idlock.mesh_auth import MeshAuth, MeshAuthSettings, resolve_key
from idlock.v1 import common_pb2
from idlock.v1 import memory_service_pb2 as mpb
from idlock.v1 import memory_service_pb2_grpc as mpb_grpc
from idlock.v1 import orchestrator_service_pb2 as opb
from idlock.v1 import orchestrator_service_pb2_grpc as opb_grpc
from tests.fakes.gemini_server import FakeGeminiServer
from tests.harness import Disk, small_disk

OWNER = "owner-faults"
TERMINAL = {
    common_pb2.JOB_STATUS_SUCCEEDED: "succeeded",
    common_pb2.JOB_STATUS_FAILED: "failed",
    common_pb2.JOB_STATUS_CANCELLED: "cancelled",
    common_pb2.JOB_STATUS_NEEDS_MORE_REFS: "needs_more_refs",
}
#: the suite's table, one row per case (written to $IDLOCK_FAULTS_REPORT when set)
ROWS: list[dict] = []


@dataclass
class FaultMesh:
    mesh: LocalMesh
    gemini: FakeGeminiServer
    disk: Disk | None
    key: bytes
    objects: Path

    def paid_calls(self, job_id: str) -> int:
        """The paid calls the render service recorded for a job's outputs (before making each)."""
        total = 0
        for marker in (self.objects / "jobs" / job_id).rglob("paid_calls.json"):
            total += int(json.loads(marker.read_text())["calls"])
        return total

    def metadata(self) -> list[tuple[str, str]]:
        return [(mesh_auth.METADATA_KEY, MeshAuth("gateway", self.key).token())]

    def channel(self, name: str) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(self.mesh.components[name].address)

    # --- faults -------------------------------------------------------------------------------------------
    def kill(self, name: str) -> None:
        self.mesh.kill(name)

    def respawn(self, name: str) -> None:
        self.mesh.respawn(name, timeout_s=90)

    def signal(self, name: str, sig: signal.Signals) -> None:
        os.kill(self.mesh.components[name].pid, sig)

    # --- the batch ----------------------------------------------------------------------------------------
    async def character(self, name: str) -> str:
        face = skdata.astronaut()
        async with self.channel("memory") as ch:
            made = await mpb_grpc.MemoryServiceStub(ch).CreateCharacter(
                mpb.CreateCharacterRequest(
                    owner_id=OWNER,
                    name=name,
                    consent_given=True,
                    reference_images=[common_pb2.ImageInput(data=encode_png(face))],
                    request_id=f"faults-{name}",
                ),
                metadata=self.metadata(),
                timeout=120,
            )
        return made.character.id

    async def submit(self, character_id: str, n: int, case: str, *, within_s: float = 120.0) -> list[str]:
        """`n` jobs, each submitted until the orchestrator takes it (it may be down): an idempotency key per job."""
        ids: list[str] = []
        for i in range(n):
            ids.append(
                await self.submit_one(
                    character_id, f"{case}-{i}", f"Arya walks through scene {i} of {case}", within_s
                )
            )
        return ids

    async def submit_one(self, character_id: str, key: str, prompt: str, within_s: float = 120.0) -> str:
        deadline = time.monotonic() + within_s
        while True:
            try:
                async with self.channel("orchestrator") as ch:
                    resp = await opb_grpc.OrchestratorServiceStub(ch).SubmitGeneration(
                        opb.SubmitGenerationRequest(
                            owner_id=OWNER, character_id=character_id, prompt=prompt, idempotency_key=key
                        ),
                        metadata=self.metadata(),
                        timeout=10,
                    )
                return resp.job.id
            except grpc.aio.AioRpcError as e:
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def jobs(self, ids: list[str]) -> dict[str, opb.Job]:
        out: dict[str, opb.Job] = {}
        async with self.channel("orchestrator") as ch:
            stub = opb_grpc.OrchestratorServiceStub(ch)
            for job_id in ids:
                out[job_id] = (
                    await stub.GetJob(
                        opb.GetJobRequest(job_id=job_id, owner_id=OWNER), metadata=self.metadata(), timeout=10
                    )
                ).job
        return out

    async def cancel(self, job_id: str) -> str:
        async with self.channel("orchestrator") as ch:
            try:
                await opb_grpc.OrchestratorServiceStub(ch).CancelJob(
                    opb.CancelJobRequest(job_id=job_id, owner_id=OWNER), metadata=self.metadata(), timeout=10
                )
                return "cancelled"
            except grpc.aio.AioRpcError as e:
                return e.details()

    async def settle(self, ids: list[str], timeout_s: float) -> tuple[dict[str, opb.Job], float]:
        """Wait until every job is terminal (or the time is up); returns the jobs and when the last one ended."""
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        while True:
            try:
                jobs = await self.jobs(ids)
            except grpc.aio.AioRpcError:
                jobs = {}
            if jobs and all(j.status in TERMINAL for j in jobs.values()):
                return jobs, time.monotonic() - t0
            if time.monotonic() > deadline:
                return jobs, time.monotonic() - t0
            await asyncio.sleep(0.5)

    async def episodes(self, character_id: str) -> collections.Counter:
        """Episodes per job id in the character's history."""
        counts: collections.Counter = collections.Counter()
        token = ""
        async with self.channel("memory") as ch:
            stub = mpb_grpc.MemoryServiceStub(ch)
            while True:
                page = await stub.ListHistory(
                    mpb.ListHistoryRequest(
                        character_id=character_id,
                        owner_id=OWNER,
                        page=common_pb2.PageRequest(page_size=200, page_token=token),
                    ),
                    metadata=self.metadata(),
                    timeout=30,
                )
                counts.update(e.job_id for e in page.episodes)
                token = page.next_page_token
                if not token:
                    return counts


@pytest.fixture(scope="package")
def fault_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultMesh]:
    root = tmp_path_factory.mktemp("faults")
    with contextlib.ExitStack() as stack:
        gemini = stack.enter_context(FakeGeminiServer())
        gemini.answer = "edit"  # the reference's face re-posed in the scene: scored like a real render
        gemini.latency_s = 0.4  # a paid call takes a while, so faults land in the middle of some
        try:
            disk: Disk | None = stack.enter_context(small_disk(root / "objects", size_mb=96))
        except pytest.skip.Exception:
            disk = None  # no mount here: the disk cases skip
            (root / "objects").mkdir(exist_ok=True)
        env = {
            "IDLOCK_RENDER_PROVIDERS": '["gemini"]',
            "IDLOCK_RENDER_GEMINI_API_KEY": "fault-suite",
            "IDLOCK_RENDER_GEMINI_BASE_URL": gemini.base_url,
            "IDLOCK_STORAGE_LOCAL_ROOT": str(root / "objects"),
            # a re-posed face can read as a near-copy: flag it rather than pay for a second render
            "IDLOCK_ORCHESTRATOR_NEAR_COPY": "flag",
            # a killed worker's jobs come back after this (the lease is the same)
            "IDLOCK_ORCHESTRATOR_ACK_WAIT_S": "5",
            "IDLOCK_ORCHESTRATOR_STEP_TIMEOUT_S": "5",
            "IDLOCK_ORCHESTRATOR_RETRY_MAX_INTERVAL_S": "3",
            "IDLOCK_ORCHESTRATOR_RECONCILE_INTERVAL_S": "5",
            "IDLOCK_ORCHESTRATOR_STUCK_AFTER_S": "30",
            "IDLOCK_ORCHESTRATOR_MAX_ACTIVE_JOBS_PER_OWNER": "100",
        }
        mesh = LocalMesh(
            root / "mesh",
            free_ports=True,
            nats_port=0,
            services=("identity", "memory", "render", "orchestrator"),
            gateway=False,
            extra_env=env,
        )
        stack.enter_context(mesh)
        key = resolve_key(MeshAuthSettings(), mesh.data_dir)
        yield FaultMesh(mesh, gemini, disk, key, root / "objects")
    report = os.environ.get("IDLOCK_FAULTS_REPORT")
    if report and ROWS:
        Path(report).write_text(table(ROWS))


def table(rows: list[dict]) -> str:
    head = (
        "| case | jobs | succeeded | failed (reasons) | cancelled | lost | duplicated effects | paid calls "
        "(repeated) | time to recover |"
    )
    lines = [head, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["failed"].items())) or "-"
        lines.append(
            f"| {r['case']} | {r['jobs']} | {r['succeeded']} | {sum(r['failed'].values())} ({reasons}) | "
            f"{r['cancelled']} | {r['lost']} | {r['duplicated']} | {r['paid']} ({r['repeated_paid']}) | "
            f"{r['recover_s']:.1f} s |"
        )
    return "\n".join(lines) + "\n"
