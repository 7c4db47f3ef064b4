"""REST gateway: the external face of IDLock. Issue #6 adds auth, characters, generation and jobs."""

from __future__ import annotations

import asyncio

import grpc
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.settings import GatewaySettings
from idlock import grpc_client
from idlock.settings import MeshSettings


async def component_health(mesh: MeshSettings, timeout_s: float) -> dict[str, str]:
    """gRPC health of every service: SERVING, NOT_SERVING or UNREACHABLE."""

    async def check(name: str, address: str) -> tuple[str, str]:
        async with grpc_client.channel(address, default_timeout_s=timeout_s) as ch:
            try:
                reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
                return name, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.aio.AioRpcError as err:
                return name, f"UNREACHABLE ({err.code().name})"

    peers = {
        name: getattr(mesh, f"{name}_addr")
        for name in ("identity", "memory", "render", "refiner", "trainer", "orchestrator")
    }
    results = await asyncio.gather(*(check(n, a) for n, a in peers.items()))
    return dict(results)


def create_app(settings: GatewaySettings | None = None, mesh: MeshSettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    mesh = mesh or MeshSettings()
    app = FastAPI(title="IDLock API", version="0.1.0", description="Consistent characters across every scene.")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness of the gateway process itself."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Ready when every service reports SERVING."""
        components = await component_health(mesh, settings.health_timeout_s)
        ready = all(v == "SERVING" for v in components.values())
        return JSONResponse({"ready": ready, "components": components}, status_code=200 if ready else 503)

    return app
