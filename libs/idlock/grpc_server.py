"""gRPC server bootstrap shared by every service (grpc.aio).

A service hands over its servicers and start-up work; this module adds health (SERVING only after start-up,
NOT_SERVING on SIGTERM before the graceful stop), reflection, interceptors (request ids + structured logs, domain
error -> status mapping, OpenTelemetry spans, deadline propagation) and message size limits.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from idlock import mesh_auth, telemetry
from idlock.errors import REASON_TRAILER, IdlockError, Unimplemented
from idlock.settings import GrpcServerSettings, PathsSettings

log = logging.getLogger("idlock.grpc")
_tracer = trace.get_tracer("idlock.grpc")

#: absolute monotonic deadline of the RPC being served; outgoing calls take what is left of it.
deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar("rpc_deadline", default=None)


def remaining_s(default: float) -> float:
    """Seconds left for an outgoing call: the caller's remaining deadline, capped at `default`."""
    deadline = deadline_var.get()
    if deadline is None:
        return default
    return max(0.001, min(default, deadline - time.monotonic()))


class _MetadataGetter:
    def get(self, carrier: Sequence[tuple[str, str | bytes]] | None, key: str) -> list[str] | None:
        values = [v if isinstance(v, str) else v.decode() for k, v in (carrier or ()) if k == key]
        return values or None

    def keys(self, carrier: Sequence[tuple[str, Any]] | None) -> list[str]:
        return [k for k, _ in (carrier or ())]


_getter = _MetadataGetter()


def _refuse(message: str):
    async def refuse(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return refuse


class ServerInterceptor(grpc.aio.ServerInterceptor):
    """Service-token check (`mesh_auth`; health and reflection stay open), request id, log line, span, metrics and
    error mapping around every RPC."""

    def __init__(self, component: str, auth: mesh_auth.MeshAuth | None = None) -> None:
        self.component = component
        self.auth = auth

    async def intercept_service(self, continuation, handler_call_details):  # type: ignore[override]
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method or ""
        if method.startswith(("/grpc.health", "/grpc.reflection")):
            return handler
        service, _, name = method.strip("/").partition("/")
        metadata = tuple(handler_call_details.invocation_metadata or ())
        caller = ""
        if self.auth is not None:
            token = next((v for k, v in metadata if k == mesh_auth.METADATA_KEY), "")
            try:
                caller = self.auth.verify(token.decode() if isinstance(token, bytes) else token)
            except mesh_auth.InvalidToken as err:
                log.warning("%s/%s refused: %s", service, name, err)
                telemetry.RPC_TOTAL.labels(self.component, name, "UNAUTHENTICATED").inc()
                message = f"{self.component} refuses calls without a valid service token ({err})"
                if handler.unary_stream:
                    return grpc.unary_stream_rpc_method_handler(
                        _refuse(message),
                        request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer,
                    )
                return grpc.unary_unary_rpc_method_handler(
                    _refuse(message),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )

        def wrap_unary(fn):
            async def unary(request, context):
                token = mesh_auth.set_caller(caller)
                try:
                    return await self._run(service, name, metadata, context, lambda: fn(request, context))
                finally:
                    mesh_auth.reset_caller(token)

            return unary

        def wrap_stream(fn):
            async def streamed(request, context):
                # The stream runs inside _run (span, ids, error mapping) and relays items in order.
                queue: asyncio.Queue = asyncio.Queue()
                done = object()

                async def pump():
                    try:
                        async for item in fn(request, context):
                            await queue.put(item)
                    finally:
                        await queue.put(done)

                caller_token = mesh_auth.set_caller(caller)  # the task copies the context: it sees the caller
                try:
                    task = asyncio.ensure_future(self._run(service, name, metadata, context, pump))
                finally:
                    mesh_auth.reset_caller(caller_token)
                while True:
                    item = await queue.get()
                    if item is done:
                        break
                    yield item
                await task

            return streamed

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrap_unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrap_stream(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _run(self, service: str, name: str, metadata, context, call: Callable[[], Awaitable[Any]]):
        ids = {
            field: _text(next((v for k, v in metadata if k == key), None))
            for field, _, key in telemetry.BOUND
        }
        request_id = ids.pop("request_id") or uuid.uuid4().hex[:16]
        remaining = context.time_remaining()
        deadline = time.monotonic() + remaining if remaining is not None else None
        parent = propagate.extract(metadata, getter=_getter)
        started = time.perf_counter()
        code = "OK"
        token = deadline_var.set(deadline)
        # the ids stay bound for the line that ends the call
        with telemetry.bound(request_id=request_id, **ids):
            try:
                with _tracer.start_as_current_span(
                    f"{service}/{name}", context=parent, kind=SpanKind.SERVER
                ) as span:
                    span.set_attribute("rpc.system", "grpc")
                    span.set_attribute("rpc.service", service)
                    span.set_attribute("rpc.method", name)
                    if ids["job_id"]:
                        span.set_attribute("idlock.job_id", ids["job_id"])
                    try:
                        return await call()
                    except IdlockError as err:
                        code = err.grpc_status
                        span.set_status(Status(StatusCode.ERROR, err.message))
                        log.info("%s/%s -> %s: %s", service, name, code, err.message)
                        if err.reason:
                            context.set_trailing_metadata(((REASON_TRAILER, err.reason),))
                        await context.abort(grpc.StatusCode[err.grpc_status], err.message)
                    except asyncio.CancelledError:
                        code = "CANCELLED"
                        raise
                    except Exception as err:
                        if _is_abort(err):
                            code = str(context.code() or "ABORTED").rsplit(".", 1)[-1]
                            raise
                        code = "INTERNAL"
                        span.record_exception(err)
                        span.set_status(Status(StatusCode.ERROR, str(err)))
                        log.exception("%s/%s failed", service, name)
                        await context.abort(
                            grpc.StatusCode.INTERNAL, f"internal error in {name} (request id {request_id})"
                        )
            finally:
                deadline_var.reset(token)
                elapsed = time.perf_counter() - started
                telemetry.RPC_TOTAL.labels(self.component, name, code).inc()
                telemetry.RPC_SECONDS.labels(self.component, name).observe(elapsed)
                log.debug(
                    "%s/%s %s in %.1f ms",
                    service,
                    name,
                    code,
                    elapsed * 1000,
                    extra=telemetry.log_fields(duration_ms=round(elapsed * 1000, 1)),
                )


def _text(value: str | bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _is_abort(err: BaseException) -> bool:
    # grpc.aio raises AbortError from context.abort(); it must pass through untouched.
    return type(err).__name__ in {"AbortError", "InternalError", "UsageError"}


def pending_rpcs(servicer_base: type, issue: str, implemented: Iterable[str] = ()) -> dict[str, Callable]:
    """Methods of a generated servicer base that answer UNIMPLEMENTED naming the issue that brings them."""
    done = set(implemented)
    methods: dict[str, Callable] = {}
    for attr in dir(servicer_base):
        if attr.startswith("_") or attr in done or not callable(getattr(servicer_base, attr)):
            continue

        def make(rpc: str):
            async def rpc_pending(self, request, context):
                raise Unimplemented(f"{rpc} is not available yet: it arrives with {issue}")

            rpc_pending.__name__ = rpc
            return rpc_pending

        methods[attr] = make(attr)
    return methods


@dataclass
class ServiceSpec:
    """What a service brings to the bootstrap."""

    component: str
    #: fully qualified proto service names, e.g. "idlock.v1.IdentityService"
    service_names: list[str]
    #: callables that register servicers: `lambda server: add_XServicer_to_server(servicer, server)`
    registrations: list[Callable[[grpc.aio.Server], None]]
    #: start-up work (load models, connect stores); the service reports SERVING only after it
    on_startup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    on_shutdown: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


class GrpcService:
    """A running grpc.aio server with health and reflection."""

    def __init__(self, spec: ServiceSpec, settings: GrpcServerSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.health = HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.port: int = 0
        self._stopped = asyncio.Event()

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    def _connection_age(self) -> list[tuple[str, int]]:
        """Callers balance over the connections they have (round_robin over a headless Service's addresses,
        IDLOCK_PEER_BALANCING): one that ends lets them find replicas a scale-up added."""
        age_s = self.settings.max_connection_age_s
        return [("grpc.max_connection_age_ms", int(age_s * 1000))] if age_s > 0 else []

    async def start(self) -> int:
        limit = self.settings.max_message_mb * 1024 * 1024
        self.server = grpc.aio.server(
            interceptors=[
                ServerInterceptor(
                    self.spec.component, mesh_auth.configure(self.spec.component, PathsSettings().data_dir)
                )
            ],
            options=[
                ("grpc.max_send_message_length", limit),
                ("grpc.max_receive_message_length", limit),
                ("grpc.so_reuseport", 0),
                # clients ping every 20 s (grpc_client.KEEPALIVE): allow it, also between calls
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
                ("grpc.http2.max_ping_strikes", 0),
                *self._connection_age(),
            ],
            maximum_concurrent_rpcs=self.settings.max_concurrent_rpcs,
        )
        for register in self.spec.registrations:
            register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [
                *self.spec.service_names,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            self.server,
        )
        for name in ["", *self.spec.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        try:
            self.port = self.server.add_insecure_port(f"{self.settings.host}:{self.settings.port}")
        except RuntimeError as err:
            raise RuntimeError(
                f"{self.spec.component}: cannot bind {self.settings.host}:{self.settings.port} ({err}); "
                f"set IDLOCK_{self.spec.component.upper()}_PORT to a free port"
            ) from err
        await self.server.start()
        for step in self.spec.on_startup:
            await step()
        for name in ["", *self.spec.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("%s serving on %s", self.spec.component, self.address)
        return self.port

    async def stop(self, drain_s: float = 0.2) -> None:
        """NOT_SERVING first (so load balancers and watchers move away), then a graceful stop."""
        if self.server is None or self._stopped.is_set():
            return
        await self.health.enter_graceful_shutdown()
        await asyncio.sleep(drain_s)
        await self.server.stop(self.settings.grace_s)
        for step in self.spec.on_shutdown:
            try:
                await step()
            except Exception:
                log.exception("%s: shutdown step failed", self.spec.component)
        self._stopped.set()
        log.info("%s stopped", self.spec.component)

    async def wait(self) -> None:
        await self._stopped.wait()


def freeze_startup_heap() -> None:
    """Put what start-up allocated (modules, models: ~300k objects in the memory service) out of the cyclic
    collector's way. Otherwise every full collection walks all of it: a 100+ ms pause inside some request."""
    gc.freeze()


async def run_forever(spec: ServiceSpec, settings: GrpcServerSettings) -> None:
    """Run a service until SIGTERM/SIGINT; used by `python -m services.<name>`."""
    service = GrpcService(spec, settings)
    await service.start()
    freeze_startup_heap()
    print(f"{spec.component} listening on {service.address}", flush=True)
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task] = []

    def on_signal() -> None:
        if not stopping:
            stopping.append(asyncio.ensure_future(service.stop(drain_s=settings.drain_s)))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await service.wait()
