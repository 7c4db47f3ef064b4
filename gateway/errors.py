"""One JSON error shape for every failure: `{"error": {"code": "...", "message": "..."}}`.

- `ApiError` is what gateway code raises; domain errors (`idlock.errors.IdlockError`) and gRPC errors from the
  mesh are translated into it (`from_grpc`, `from_domain`) with the service's own message.
- `install(app)` registers handlers so validation errors (400, naming the field), unknown routes, wrong methods
  and unexpected exceptions all answer in the same shape.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from idlock.errors import IdlockError, reason_of

log = logging.getLogger("idlock.gateway")


class ApiError(Exception):
    """An HTTP error answered as `{"error": {"code", "message"[, "details"]}}`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = details

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            err["details"] = self.details
        return {"error": err}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def not_found(kind: str, ident: str) -> ApiError:
    """The one answer for a missing resource and for another user's resource (they must be indistinguishable)."""
    return ApiError(404, "not_found", f"{kind} {ident} not found")


def bad_request(message: str, **details: Any) -> ApiError:
    return ApiError(400, "invalid_argument", message, details=details or None)


def too_large(message: str) -> ApiError:
    return ApiError(413, "payload_too_large", message)


def unauthenticated(message: str) -> ApiError:
    return ApiError(401, "unauthenticated", message, headers={"WWW-Authenticate": "Bearer"})


#: gRPC status -> (HTTP status, error code)
GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_argument"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "out_of_range"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "unauthenticated"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "permission_denied"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "failed_precondition"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "already_exists"),
    grpc.StatusCode.ABORTED: (409, "aborted"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "resource_exhausted"),
    grpc.StatusCode.UNIMPLEMENTED: (501, "unimplemented"),
    grpc.StatusCode.UNAVAILABLE: (503, "unavailable"),
    grpc.StatusCode.CANCELLED: (503, "unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "deadline_exceeded"),
}
#: anything else (INTERNAL, UNKNOWN, DATA_LOSS) is the mesh's fault, not the client's
UPSTREAM_FAILURE = (502, "upstream_error")


#: reasons whose HTTP status is finer than their gRPC status's
REASON_STATUS = {"idempotency_key_reused": 422}


def http_for_grpc(code: grpc.StatusCode) -> tuple[int, str]:
    return GRPC_TO_HTTP.get(code, UPSTREAM_FAILURE)


def from_grpc(err: grpc.aio.AioRpcError | grpc.RpcError, service: str) -> ApiError:
    """An error from a mesh service, with that service's message (or a plain one when it gave none)."""
    code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
    details = err.details() if callable(getattr(err, "details", None)) else ""
    status, name = http_for_grpc(code)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        message = f"the {service} service is unavailable, try again later" + (
            f": {details}" if details else ""
        )
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message = f"the {service} service did not answer in time" + (f": {details}" if details else "")
    else:
        message = details or f"the {service} service answered {code.name}"
    headers = {"Retry-After": "1"} if status == 503 else None
    # a service's finer reason (prompt_refused, protected_identity) is the code the client sees
    reason = reason_of(err)
    return ApiError(REASON_STATUS.get(reason, status), reason or name, message, headers=headers)


def frozen_error(character_id: str) -> ApiError:
    """423: a reported character is frozen until an administrator resolves the report."""
    return ApiError(
        423,
        "frozen",
        f"character {character_id} is frozen while a report about it is reviewed",
        details={"character_id": character_id},
    )


def from_domain(err: IdlockError) -> ApiError:
    return ApiError(err.http_status, err.reason or err.code, err.message)


def _field_name(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie", "form"):
        where, rest = parts[0], parts[1:]
        return f"{'.'.join(rest) or where} ({where})" if rest else where
    return ".".join(parts) or "request"


def validation_message(errors: Sequence[Mapping[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    """`invalid request: character_id (body): Field required; ...` and a list of {field, problem}."""
    items = []
    for e in errors:
        if e.get("type") == "json_invalid":
            loc = e.get("loc", ())
            where = f" at character {loc[1]}" if len(loc) > 1 else ""
            reason = (e.get("ctx") or {}).get("error", "")
            items.append(
                {"field": "body", "problem": f"not valid JSON{where}" + (f" ({reason})" if reason else "")}
            )
        else:
            items.append({"field": _field_name(e.get("loc", ())), "problem": str(e.get("msg", "invalid"))})
    text = "; ".join(f"{i['field']}: {i['problem']}" for i in items) or "malformed request"
    return f"invalid request: {text}", items


_HTTP_CODES = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def allowed_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document gives the requested path (Starlette's 405 names only the first route it
    matched). A 405 is rare: the document (cached by FastAPI) is walked each time."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods.update(m.upper() for m in operations)
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Register the JSON error handlers on `app`."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(IdlockError)
    async def _domain_error(_: Request, exc: IdlockError) -> JSONResponse:
        return from_domain(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, items = validation_message(exc.errors())
        return ApiError(400, "invalid_argument", message, details=items).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
            headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
        elif not (exc.status_code == 404 and exc.detail == "Not Found"):
            message = str(exc.detail)
        return ApiError(exc.status_code, code, message, headers=headers).response()

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return ApiError(500, "internal", "internal error in the gateway").response()
