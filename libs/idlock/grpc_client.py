"""Client channels between services: a deadline on every call, retries for UNAVAILABLE on idempotent RPCs,
keepalive and a short reconnect backoff (a restarted peer is found again on the same channel), the process's
service token (`mesh_auth`), request id and trace context passed along in metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import grpc
from opentelemetry import propagate

from idlock import errors, mesh_auth, telemetry
from idlock.grpc_server import remaining_s
from idlock.settings import MeshSettings, PeerBalancing

#: RPCs that are safe to retry after UNAVAILABLE (reads, pure computations, idempotent-by-key writes).
IDEMPOTENT_RPCS: dict[str, list[str]] = {
    "idlock.v1.IdentityService": [
        "DetectFaces",
        "EncodeReferences",
        "ScoreIdentity",
        "CompareImages",
        "ExtractFrames",
    ],
    "idlock.v1.MemoryService": [
        "GetCharacter",
        "ListCharacters",
        "ListHistory",
        "GetCurrentState",
        "GetAttributeHistory",
        "BuildContext",
        "RecordEpisode",
        "DeleteCharacter",
        "Consolidate",
    ],
    "idlock.v1.RenderService": ["ListProviders"],
    "idlock.v1.RefinerService": [],
    "idlock.v1.TrainerService": ["ListGoldenImages", "GetTrainingRun", "GetActiveLora", "ListLoras"],
    "idlock.v1.OrchestratorService": ["GetJob", "ListJobs", "ListUsage", "SubmitGeneration", "CancelJob"],
}


def service_config(
    idempotent: dict[str, list[str]] | None = None,
    *,
    max_attempts: int = 4,
    balancing: PeerBalancing = "pick_first",
) -> str:
    """gRPC service config JSON: the load-balancing policy over the target's addresses (`MeshSettings.peer_balancing`),
    and UNAVAILABLE retried with backoff on the idempotent RPCs only."""
    idempotent = IDEMPOTENT_RPCS if idempotent is None else idempotent
    names = [{"service": svc, "method": m} for svc, methods in idempotent.items() for m in methods]
    config = {
        "loadBalancingConfig": [{balancing: {}}],
        "methodConfig": [
            {
                "name": names,
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
        if names
        else [],
    }
    return json.dumps(config)


#: a dead connection is noticed in ~30 s (a peer gone without a FIN); a restarted peer is reconnected to within
#: ~1 s (gRPC's default reconnect backoff grows to 120 s, which left a restarted peer "refused" for seconds)
KEEPALIVE: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1_000),
)


class _CallDetails(grpc.aio.ClientCallDetails):
    pass


class _DeadlineAndContext:
    """Fills in a deadline (what is left of the caller's, at most the default), the service token, and propagates
    ids. grpc.aio files an interceptor under one kind only, so each kind gets its own subclass below."""

    def __init__(self, default_timeout_s: float) -> None:
        self.default_timeout_s = default_timeout_s

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        timeout = details.timeout if details.timeout is not None else remaining_s(self.default_timeout_s)
        metadata = list(details.metadata or [])
        keys = {k for k, _ in metadata}
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        metadata.extend((k, v) for k, v in carrier.items() if k not in keys)
        for _, var, key in telemetry.BOUND:
            value = var.get()
            # ids for the peer's log lines; a caller's odd value (not printable ASCII) is not a valid header
            if value and key not in keys and len(value) <= 200 and value.isascii() and value.isprintable():
                metadata.append((key, value))
        auth = mesh_auth.current()
        if mesh_auth.METADATA_KEY not in keys and auth is not None:
            metadata.append((mesh_auth.METADATA_KEY, auth.token()))
        return _CallDetails(details.method, timeout, metadata, details.credentials, details.wait_for_ready)


class _UnaryUnary(_DeadlineAndContext, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


class _UnaryStream(_DeadlineAndContext, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):
        return await continuation(self._details(client_call_details), request)


def channel(
    target: str,
    *,
    default_timeout_s: float = 30.0,
    max_message_mb: int = 32,
    idempotent: dict[str, list[str]] | None = None,
    extra_options: Iterable[tuple[str, object]] = (),
    balancing: PeerBalancing | None = None,
) -> grpc.aio.Channel:
    """An insecure aio channel (the mesh runs inside the cluster network; mTLS belongs to the service mesh).
    `balancing`: the load-balancing policy, by default `IDLOCK_PEER_BALANCING`."""
    limit = max_message_mb * 1024 * 1024
    policy = balancing or MeshSettings().peer_balancing
    return grpc.aio.insecure_channel(
        target,
        options=[
            ("grpc.service_config", service_config(idempotent, balancing=policy)),
            ("grpc.enable_retries", 1),
            ("grpc.max_send_message_length", limit),
            ("grpc.max_receive_message_length", limit),
            *KEEPALIVE,
            *extra_options,
        ],
        interceptors=[_UnaryUnary(default_timeout_s), _UnaryStream(default_timeout_s)],
    )


#: a peer's status code -> our domain error; derived from the errors' own codes, plus the codes they don't own
_ERROR_BY_CODE: dict[grpc.StatusCode, type[errors.IdlockError]] = {
    **{
        grpc.StatusCode[cls.grpc_status]: cls
        for cls in errors.IdlockError.__subclasses__()
        if cls is not errors.Cancelled
    },
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidInput,
    grpc.StatusCode.UNAUTHENTICATED: errors.PermissionDenied,
    # a call cut off by the peer's shutdown or a conflict is worth another try
    grpc.StatusCode.CANCELLED: errors.Unavailable,
    grpc.StatusCode.ABORTED: errors.Unavailable,
}


def peer_error(
    err: grpc.aio.AioRpcError,
    where: str = "",
    *,
    default: type[errors.IdlockError] = errors.Unavailable,
) -> errors.IdlockError:
    """A failed call to a peer service as our own domain error: same status, the peer's message (prefixed with
    `where` when given), so it travels on to our caller unchanged in meaning. Unknown codes become `default`."""
    code = err.code()
    message = err.details() or code.name
    cls = _ERROR_BY_CODE.get(code, default)
    reason = errors.reason_of(err)
    finer = errors.BY_REASON.get(reason)
    if finer is not None and issubclass(finer, cls):  # storage_full stays a StorageFull across the mesh
        cls = finer
    out = cls(f"{where}: {message}" if where else message, details={"code": code.name, "peer": where})
    out.reason = reason  # passed on as it came (prompt_refused, protected_identity, ...)
    return out
