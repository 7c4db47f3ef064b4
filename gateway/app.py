"""REST gateway: the external face of IDLock (FastAPI; OpenAPI at /docs and /openapi.json).

Auth (JWT + API keys), characters, generation jobs (with server-sent events), history and admin endpoints,
calling the mesh over gRPC only. Every error is `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
from fastapi import FastAPI, HTTPException
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from grpc_health.v1 import health_pb2, health_pb2_grpc
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import errors, pose, studio
from gateway.core import Gateway
from gateway.metrics import HTTP_REQUESTS, HTTP_SECONDS
from gateway.routers import admin, auth, characters, jobs, learning, objects, reports
from gateway.schemas import Liveness, Readiness
from gateway.settings import GatewaySettings
from idlock import grpc_client
from idlock.grpc_server import freeze_startup_heap
from idlock.settings import DatabaseSettings, MeshSettings, NatsSettings, PathsSettings, StorageSettings
from idlock.telemetry import request_id_var

#: room for form fields and multipart framing on top of the files themselves
MULTIPART_OVERHEAD_BYTES = 1024 * 1024


#: the services the gateway itself calls: it can serve requests while these are up
GATEWAY_DEPENDENCIES = ("memory", "orchestrator")
ALL_SERVICES = ("identity", "memory", "render", "refiner", "trainer", "orchestrator")


async def component_health(
    mesh: MeshSettings, timeout_s: float, services: tuple[str, ...] = ALL_SERVICES
) -> dict[str, str]:
    """gRPC health of the given services: SERVING, NOT_SERVING or UNREACHABLE."""

    async def check(name: str, address: str) -> tuple[str, str]:
        async with grpc_client.channel(address, default_timeout_s=timeout_s) as ch:
            try:
                reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
                return name, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            except grpc.aio.AioRpcError as err:
                return name, f"UNREACHABLE ({err.code().name})"

    peers = {name: getattr(mesh, f"{name}_addr") for name in services}
    results = await asyncio.gather(*(check(n, a) for n, a in peers.items()))
    return dict(results)


class _BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than the limit of {limit} bytes")


#: on every answer; the studio's page sets its own Content-Security-Policy (which also forbids framing)
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
#: answers that carry credentials are never stored by a browser or a proxy
NO_STORE_PATHS = frozenset({"/auth/login", "/auth/register", "/auth/api-keys"})


def _secure(headers: list[tuple[bytes, bytes]], path: str) -> list[tuple[bytes, bytes]]:
    present = {k.lower() for k, _ in headers}
    out = [*headers, *(h for h in SECURITY_HEADERS if h[0] not in present)]
    if b"content-security-policy" not in present:
        out.append(API_CSP)
    if path in NO_STORE_PATHS:
        out = [h for h in out if h[0].lower() != b"cache-control"] + [(b"cache-control", b"no-store")]
    return out


class RequestContextMiddleware:
    """Request id (X-Request-ID in and out, passed into the mesh), security headers, body size limit, HTTP
    metrics."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        incoming = headers.get("x-request-id", "")
        request_id = (
            incoming if incoming and len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex[:16]
        )
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = {"code": 500}
        limit = self.max_body_bytes

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = _secure(
                    [*message["headers"], (b"x-request-id", request_id.encode())], scope.get("path", "")
                )
            await send(message)

        try:
            declared = headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                body = errors.too_large(
                    f"request body is {declared} bytes, larger than the limit of {limit} bytes"
                )
                await body.response()(scope, receive, send_with_id)
                return
            seen = 0

            async def receive_limited() -> Message:
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        raise _BodyTooLarge(limit)
                return message

            await self.app(scope, receive_limited, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            HTTP_REQUESTS.labels(scope["method"], path, str(status["code"])).inc()
            HTTP_SECONDS.labels(scope["method"], path).observe(time.perf_counter() - started)
            request_id_var.reset(token)


def create_app(
    settings: GatewaySettings | None = None,
    mesh: MeshSettings | None = None,
    *,
    data_dir: Path | None = None,
    database: DatabaseSettings | None = None,
    storage: StorageSettings | None = None,
    nats: NatsSettings | None = None,
    resolver: pose.Resolver = pose.system_resolver,
    pose_transport: httpx.AsyncBaseTransport | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """The gateway app. Its lifespan opens the database, object store and mesh channels; tests inject a DNS
    resolver and an HTTP transport for pose downloads. `freeze_heap`: the app is its process's own, whose
    start-up heap is frozen once started (`freeze_startup_heap`)."""
    settings = settings or GatewaySettings()
    mesh = mesh or MeshSettings()
    gateway = Gateway(
        settings,
        mesh,
        data_dir=data_dir or PathsSettings().data_dir,
        database=database,
        storage=storage,
        nats=nats,
        resolver=resolver,
        pose_transport=pose_transport,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gateway.start()
        if freeze_heap:
            freeze_startup_heap()
        try:
            yield
        finally:
            await gateway.close()

    app = FastAPI(
        title="IDLock API",
        version="0.1.0",
        description=(
            "Consistent characters across every scene. Authenticate with `Authorization: Bearer <JWT>` "
            '(POST /auth/login) or `X-API-Key`. Errors are `{"error": {"code", "message"}}`.'
        ),
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    errors.install(app)
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=settings.max_upload_total_bytes + MULTIPART_OVERHEAD_BYTES
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["Retry-After", "X-Request-ID", "Location"],
        )

    @app.get("/healthz", tags=["health"], response_model=Liveness)
    async def healthz() -> dict[str, str]:
        """Liveness of the gateway process itself."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=Readiness, responses={503: {"model": Readiness}})
    async def readyz() -> JSONResponse:
        """Ready when the services the gateway calls (memory, orchestrator) report SERVING. A worker-side
        service being down (render, identity, ...) delays jobs but must not take the API out of the load
        balancer; /api/v1/admin/health shows every component."""
        components = await component_health(mesh, settings.health_timeout_s, GATEWAY_DEPENDENCIES)
        ready = all(v == "SERVING" for v in components.values())
        return JSONResponse({"ready": ready, "components": components}, status_code=200 if ready else 503)

    for router in (
        auth.router,
        characters.router,
        learning.router,
        jobs.router,
        admin.router,
        reports.router,
        objects.router,
    ):
        app.include_router(router)
    studio.install(app)
    _document_settings(app, settings)
    return app


def _document_settings(app: FastAPI, settings: GatewaySettings) -> None:
    """Limits that are settings go into the OpenAPI document as the running gateway applies them."""
    default_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = default_openapi()
            password = schema["components"]["schemas"]["Registration"]["properties"]["password"]
            password["minLength"] = settings.password_min_length
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["component_health", "create_app"]
