"""Fixtures for the orchestrator tests: real identity + render (offline compositor) services and a real
nats-server, the fake memory service (see fake_memory.py), and a fresh orchestrator per test.

The peers run once per module (identity loads its models once); every test gets its own orchestrator database
(IDLOCK_DATABASE_URL) and its own characters, all sharing one object store under the module's data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import nats
import pytest
from skimage import data as skdata

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from idlock import bus as idbus
from idlock import refs, subjects
from idlock.bus import EventBus
from idlock.images import encode_png
from idlock.settings import NatsSettings, StorageSettings
from idlock.storage import open_store
from idlock.v1 import (
    common_pb2,
    events_pb2,
)
from idlock.v1 import (
    identity_service_pb2 as ipb,
)
from idlock.v1 import (
    identity_service_pb2_grpc as ipb_grpc,
)
from idlock.v1 import memory_service_pb2_grpc as mpb_grpc
from idlock.v1 import (
    orchestrator_service_pb2 as pb,
)
from idlock.v1 import (
    orchestrator_service_pb2_grpc as pb_grpc,
)
from services.orchestrator.server import OrchestratorServicer, spec_for
from services.orchestrator.settings import OrchestratorSettings
from tests.harness import running_services, started_service
from tests.integration.orchestrator.fake_memory import FakeMemory, fake_memory_server

OFFLINE_RENDER = {"IDLOCK_RENDER_PROVIDERS": '["compositor"]', "IDLOCK_RENDER_GEMINI_API_KEY": ""}
OWNER = "owner-1"


@dataclass
class Peers:
    data_dir: Path
    env: dict[str, str]
    memory: FakeMemory
    identity: common_pb2.IdentityVector
    references: list[common_pb2.ImageRef]

    def add_character(self, **kw) -> str:
        cid = kw.pop("character_id", f"char_{uuid.uuid4().hex[:10]}")
        self.memory.add_character(cid, kw.pop("owner_id", OWNER), self.identity, self.references, **kw)
        return cid


@contextlib.asynccontextmanager
async def mesh_peers(
    nats_server, data_dir: Path, ref: common_pb2.ImageRef, render_env: dict[str, str]
) -> AsyncIterator[Peers]:
    """Identity and render (with `render_env`) on real servers, the fake memory, one character reference."""
    async with fake_memory_server() as (fake, memory_addr):
        env = {"IDLOCK_NATS_URL": nats_server.url, "IDLOCK_MEMORY_ADDR": memory_addr}
        async with running_services(
            data_dir, ["identity", "render"], env=env, per_service_env={"render": render_env}
        ) as channels:
            encoded = await ipb_grpc.IdentityServiceStub(channels["identity"]).EncodeReferences(
                ipb.EncodeReferencesRequest(images=[common_pb2.ImageInput(ref=ref)])
            )
            env = {
                **env,
                "IDLOCK_IDENTITY_ADDR": os.environ["IDLOCK_IDENTITY_ADDR"],
                "IDLOCK_RENDER_ADDR": os.environ["IDLOCK_RENDER_ADDR"],
            }
            yield Peers(data_dir, env, fake, encoded.identity, [ref])


@pytest.fixture(scope="module")
async def peers(nats_server, tmp_path_factory) -> AsyncIterator[Peers]:
    data_dir = tmp_path_factory.mktemp("orch-mesh")
    store = await open_store(StorageSettings(), data_dir)
    face = skdata.astronaut()
    ref = await refs.put_image(
        store, "characters/arya/ref_0.png", encode_png(face), width=face.shape[1], height=face.shape[0]
    )
    async with mesh_peers(nats_server, data_dir, ref, OFFLINE_RENDER) as peers:
        yield peers


@dataclass
class Orchestrator:
    stub: pb_grpc.OrchestratorServiceStub
    servicer: OrchestratorServicer
    peers: Peers
    events: list[tuple[str, events_pb2.JobEvent]] = field(default_factory=list)
    #: host:port of its gRPC server
    address: str = ""

    def events_of(self, job_id: str) -> list[str]:
        return [subj.rsplit(".", 1)[-1] for subj, ev in self.events if ev.job_id == job_id]

    async def wait_status(
        self, job_id: str, statuses, timeout_s: float = 30.0, owner_id: str = OWNER
    ) -> pb.Job:
        wanted = {statuses} if isinstance(statuses, int) else set(statuses)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            job = (await self.stub.GetJob(pb.GetJobRequest(job_id=job_id, owner_id=owner_id))).job
            if job.status in wanted:
                return job
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} still {common_pb2.JobStatus.Name(job.status)}: {job}")
            await asyncio.sleep(0.1)

    def log_work(self) -> list[events_pb2.GenerateJobWork]:
        """Every work message this orchestrator publishes on the job queue from now on."""
        sent: list[events_pb2.GenerateJobWork] = []
        publish = self.servicer.bus.publish

        async def recorded(subject, message, **kwargs):
            if isinstance(message, events_pb2.GenerateJobWork):
                sent.append(message)
            return await publish(subject, message, **kwargs)

        self.servicer.bus.publish = recorded
        return sent

    def log_writes(self, entry=None) -> list:
        """Every step write of the job store from now on, as `entry(step, checkpoint, commit)` (default: the step,
        the steps it holds, sorted, and "commit" for the effect boundary)."""
        writes: list = []
        store = self.servicer.store
        save_steps = store.save_steps

        def default(step, checkpoint, commit):
            return (step, sorted(checkpoint)) + (("commit",) if commit else ())

        async def logged(job_id, worker_id, checkpoint, *, step, commit=False):
            writes.append((entry or default)(step, checkpoint, commit))
            return await save_steps(job_id, worker_id, checkpoint, step=step, commit=commit)

        store.save_steps = logged
        return writes

    async def submit(
        self,
        character_id: str,
        prompt: str = "Arya walks through a forest in a red cloak, holding a sword, determined",
        **kw,
    ) -> pb.SubmitGenerationResponse:
        kw.setdefault("owner_id", OWNER)
        return await self.stub.SubmitGeneration(
            pb.SubmitGenerationRequest(character_id=character_id, prompt=prompt, **kw)
        )


def orchestrator_settings(**overrides) -> OrchestratorSettings:
    base = {
        "ack_wait_s": 4.0,
        "max_deliver": 3,
        "backoff_s": [0.2, 0.5],
        "reconcile_interval_s": 3600.0,
        "concurrency": 2,
        "watch_poll_s": 0.05,
        "gemini_api_key": "",
        # the compositor's face is the reference's (a near-copy): these tests are about other steps, so they
        # flag it; test_orchestrator_copies.py covers regenerate and fail
        "near_copy": "flag",
    }
    base.update(overrides)
    return OrchestratorSettings(**base)


@contextlib.asynccontextmanager
async def orchestrator(peers: Peers, db_dir: Path, **overrides) -> AsyncIterator[Orchestrator]:
    env = {**peers.env, "IDLOCK_DATABASE_URL": f"sqlite+aiosqlite:///{db_dir / 'orchestrator.sqlite3'}"}
    with mock.patch.dict(os.environ, env):
        settings = orchestrator_settings(**overrides)
    servicer = OrchestratorServicer(settings)
    nc = await nats.connect(peers.env["IDLOCK_NATS_URL"])
    events: list = []

    async def on_event(msg) -> None:
        events.append((msg.subject, idbus.decode(msg)))

    await nc.subscribe("idlock.events.job.>", cb=on_event)
    try:
        async with started_service(
            "orchestrator", peers.data_dir, spec=spec_for(servicer), settings=settings, **env
        ) as (service, channel):
            yield Orchestrator(
                pb_grpc.OrchestratorServiceStub(channel), servicer, peers, events, service.address
            )
    finally:
        await nc.drain()
        bus = await EventBus.connect(NatsSettings(url=peers.env["IDLOCK_NATS_URL"]))
        try:
            await bus.delete_consumer(subjects.JOBS_STREAM, subjects.ORCHESTRATOR_GENERATE)
            with contextlib.suppress(Exception):  # made only when a test started the worker
                await bus.delete_consumer(subjects.EVENTS_STREAM, subjects.ORCHESTRATOR_CHARACTER_DELETED)
        finally:
            await bus.close()


@pytest.fixture
async def orch(peers, tmp_path) -> AsyncIterator[Orchestrator]:
    async with orchestrator(peers, tmp_path) as o:
        yield o


MEMORY_ENV = {"IDLOCK_MEMORY_TEXT_EMBEDDER": "hashing", "IDLOCK_MEMORY_CACHE_BACKEND": "memory"}


@pytest.fixture(scope="module")
async def real_mesh(nats_server, tmp_path_factory) -> AsyncIterator[tuple[Peers, mpb_grpc.MemoryServiceStub]]:
    """Identity, render (offline) and the real memory service; a reference image in the store."""
    data_dir = tmp_path_factory.mktemp("orch-real-memory")
    store = await open_store(StorageSettings(), data_dir)
    face = skdata.astronaut()
    ref = await refs.put_image(
        store, "uploads/arya/ref_0.png", encode_png(face), width=face.shape[1], height=face.shape[0]
    )
    env = {"IDLOCK_NATS_URL": nats_server.url}
    async with running_services(
        data_dir,
        ["identity", "render", "memory"],
        env=env,
        per_service_env={"render": OFFLINE_RENDER, "memory": MEMORY_ENV},
    ) as channels:
        env.update(
            {k: os.environ[k] for k in ("IDLOCK_IDENTITY_ADDR", "IDLOCK_RENDER_ADDR", "IDLOCK_MEMORY_ADDR")}
        )
        memory = mpb_grpc.MemoryServiceStub(channels["memory"])
        yield Peers(data_dir, env, None, common_pb2.IdentityVector(), [ref]), memory  # type: ignore[arg-type]
