"""One trace per job: the gateway's request (FastAPI's own server span), the orchestrator's RPC, the outbox's publish and the worker's delivery
through NATS (or the run of a job started where it was accepted), each step, and every service's RPC (memory, render, identity) share one trace id, and carry the job
id. Every component runs in this process with its real server; spans go to an in-memory exporter."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import create_app
from gateway.settings import GatewaySettings
from idlock.settings import DatabaseSettings, MeshSettings, NatsSettings, StorageSettings
from idlock.v1 import common_pb2
from idlock.v1 import memory_service_pb2 as mpb
from tests.integration.orchestrator.conftest import orchestrator

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """The process's tracer provider (set here unless something set one before) exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "another tracer provider is set for this process"
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.mark.parametrize("local_start", [True, False], ids=["started-where-accepted", "through-the-queue"])
async def test_one_trace_runs_from_the_gateway_through_nats_to_every_service(
    real_mesh, spans, nats_server, tmp_path, local_start
) -> None:
    peers, memory = real_mesh
    async with orchestrator(peers, tmp_path, local_start=local_start) as orch:
        dead = "127.0.0.1:1"
        mesh = MeshSettings(
            identity_addr=peers.env["IDLOCK_IDENTITY_ADDR"],
            render_addr=peers.env["IDLOCK_RENDER_ADDR"],
            memory_addr=peers.env["IDLOCK_MEMORY_ADDR"],
            orchestrator_addr=orch.address,
            refiner_addr=dead,
            trainer_addr=dead,
        )
        app = create_app(
            GatewaySettings(jwt_secret=None, rpc_timeout_s=30),
            mesh,
            data_dir=tmp_path / "gateway",
            database=DatabaseSettings(url=""),
            storage=StorageSettings(backend="local", local_root=peers.data_dir / "objects"),
            nats=NatsSettings(url=nats_server.url),
        )
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as api,
        ):
            made = await api.post(
                "/auth/register", json={"email": "tracer@example.com", "password": PASSWORD}
            )
            assert made.status_code == 201, made.text
            user_id = made.json()["user_id"]
            token = (
                await api.post("/auth/login", json={"email": "tracer@example.com", "password": PASSWORD})
            ).json()["access_token"]
            api.headers["Authorization"] = f"Bearer {token}"
            created = await memory.CreateCharacter(
                mpb.CreateCharacterRequest(
                    owner_id=user_id,
                    name="Arya",
                    consent_given=True,
                    request_id="arya-traced",
                    reference_images=[common_pb2.ImageInput(ref=peers.references[0])],
                )
            )
            cid = created.character.id
            spans.clear()
            accepted = await api.post(
                "/api/v1/generate", json={"character_id": cid, "prompt": "Arya in a forest"}
            )
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["job_id"]
            for _ in range(300):
                job = (await api.get(f"/api/v1/job/{job_id}")).json()
                if job["status"] in ("succeeded", "failed"):
                    break
                await asyncio.sleep(0.1)
            assert job["status"] == "succeeded", job

    finished = spans.get_finished_spans()
    (request,) = [s for s in finished if s.name == "POST /api/v1/generate"]
    assert request.attributes["http.response.status_code"] == 202
    in_trace = [s for s in finished if s.context.trace_id == request.context.trace_id]
    names = {s.name for s in in_trace}
    # through the queue: the outbox's relay publishes the work and a worker's delivery runs it; a job started where
    # it was accepted runs in a span of its own, and its work is never published
    hops = ["idlock.jobs.generate publish", "idlock.jobs.generate process"]
    run_span = "job local start" if local_start else "idlock.jobs.generate process"
    if local_start:
        assert not names & set(hops), sorted(names)
        hops = [run_span]
    for expected in (
        "idlock.v1.OrchestratorService/SubmitGeneration",  # gateway -> orchestrator
        *hops,
        "job step context",
        "idlock.v1.MemoryService/BuildContext",  # -> memory
        "job step render",
        "idlock.v1.RenderService/RenderImage",  # -> render
        "idlock.v1.IdentityService/ScoreIdentity",  # -> identity
        "idlock.v1.MemoryService/RecordEpisode",
    ):
        assert expected in names, f"{expected} is not in the job's trace: {sorted(names)}"
    # the gateway's endpoint names the job it made; the job's own spans, and the RPCs they make, name it too
    assert any(s.attributes.get("idlock.job_id") == job_id for s in in_trace if s.name.startswith("fastapi."))
    job_spans = [s for s in in_trace if s.name.startswith("job step") or s.name == run_span]
    parents = {s.context.span_id for s in job_spans}
    calls = [
        s for s in in_trace if s.name.startswith("idlock.v1.") and s.parent and s.parent.span_id in parents
    ]
    assert {"idlock.v1.MemoryService/BuildContext", "idlock.v1.RenderService/RenderImage"} <= {
        c.name for c in calls
    }
    for s in job_spans + calls:
        assert s.attributes.get("idlock.job_id") == job_id, s.name
    polls = [s for s in finished if s.name == "GET /api/v1/job/{job_id}"]
    assert polls and all(p.context.trace_id != request.context.trace_id for p in polls)
