"""The administrators' view of the mesh: the gRPC health of every service, NATS and the gateway's database."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from idlock import grpc_client
from idlock.launch import SERVICES

if TYPE_CHECKING:
    from gateway.core import Gateway


async def mesh_health(gw: Gateway) -> dict[str, Any]:
    """gRPC health of every service, NATS and the gateway's database, checked at once."""
    timeout = gw.settings.health_timeout_s

    async def grpc_health(name: str) -> tuple[str, str]:
        address = getattr(gw.mesh, f"{name}_addr")
        ch = gw.channels.get(name)
        own = ch is None
        if own:
            ch = grpc_client.channel(address, default_timeout_s=timeout)
        try:
            reply = await health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
            return name, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.aio.AioRpcError as err:
            return name, f"UNREACHABLE ({err.code().name})"
        finally:
            if own:
                await ch.close()

    async def nats_health() -> tuple[str, str]:
        import nats

        servers = [u.strip() for u in gw.nats_settings.url.split(",") if u.strip()]
        try:
            nc = await asyncio.wait_for(
                nats.connect(
                    servers=servers,
                    connect_timeout=timeout,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                ),
                timeout=timeout * 2,
            )
        except Exception as exc:  # noqa: BLE001 - any failure is "unreachable"
            return "nats", f"UNREACHABLE ({type(exc).__name__})"
        try:
            return "nats", "SERVING" if nc.is_connected else "NOT_SERVING"
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def db_health() -> tuple[str, str]:
        try:
            async with asyncio.timeout(timeout):
                async with gw.db.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return "database", "SERVING"
        except Exception as exc:  # noqa: BLE001
            return "database", f"UNREACHABLE ({type(exc).__name__})"

    started = time.perf_counter()
    results = await asyncio.gather(*(grpc_health(n) for n in SERVICES), nats_health(), db_health())
    components = dict(results)
    healthy = all(v == "SERVING" for v in components.values())
    return {
        "status": "ok" if healthy else "degraded",
        "components": components,
        "checked_in_s": round(time.perf_counter() - started, 3),
    }
