"""FastAPI dependencies: the gateway object, the authenticated caller (Bearer JWT or X-API-Key), rate limits,
the admin check, the Idempotency-Key header."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from gateway.core import Caller, Gateway
from gateway.errors import ApiError, bad_request, unauthenticated
from gateway.metrics import RATE_LIMITED
from gateway.ratelimit import take
from idlock.telemetry import request_id_var, user_id_var

bearer_scheme = HTTPBearer(auto_error=False, description="JWT from POST /auth/login")
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="API key from POST /auth/api-keys"
)


def gateway(request: Request) -> Gateway:
    return request.app.state.gateway


def client_ip(request: Request) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy (IDLOCK_GATEWAY_TRUSTED_PROXIES); then
    the nearest address in X-Forwarded-For that is not one of those proxies. Anyone else's header is ignored."""
    peer = request.client.host if request.client else ""
    trusted = request.app.state.gateway.trusted_proxies
    if not trusted or not _within(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop if _is_ip(hop) else peer
    return peer


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _within(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


async def caller(
    request: Request,
    gw: Annotated[Gateway, Depends(gateway)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Caller:
    """The authenticated user; 401 without valid credentials."""
    if bearer is not None and bearer.credentials:
        principal = await gw.users.from_token(bearer.credentials)
    elif api_key:
        principal = await gw.users.from_api_key(api_key)
    else:
        raise unauthenticated(
            "authentication required: send Authorization: Bearer <token> or X-API-Key: <key>"
        )
    user_id_var.set(principal.user_id)  # the request's own task: its log lines and mesh calls carry it
    return Caller(
        principal=principal,
        client_ip=client_ip(request),
        request_id=request_id_var.get(),
        base_url=str(request.base_url),
    )


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def limited_caller(
    request: Request, who: Annotated[Caller, Depends(caller)], gw: Annotated[Gateway, Depends(gateway)]
) -> Caller:
    """The caller, after taking a token from their per-user bucket and, for a write, from their address's (429
    with Retry-After when empty): a second account from the same address shares the address's limit."""
    try:
        await take(gw.api_limiter, who.user_id)
        if request.method in WRITES:
            await take(gw.write_ip_limiter, f"ip:{who.client_ip}", "write requests from this address")
    except ApiError:
        RATE_LIMITED.labels("api").inc()
        raise
    return who


async def password_caller(who: Annotated[Caller, Depends(limited_caller)]) -> Caller:
    """A caller signed in with a password (a JWT): an API key cannot manage API keys."""
    if who.principal.via != "jwt":
        raise ApiError(
            403,
            "permission_denied",
            "API keys cannot create, list or revoke API keys: sign in with your password and use the token",
        )
    return who


async def admin_caller(who: Annotated[Caller, Depends(limited_caller)]) -> Caller:
    if not who.principal.is_admin:
        raise ApiError(403, "permission_denied", "this endpoint is for administrators only")
    return who


async def auth_rate_limit(request: Request, gw: Annotated[Gateway, Depends(gateway)]) -> None:
    """Per client IP limit on /auth endpoints (password guessing, mass sign-ups)."""
    try:
        await take(gw.auth_limiter, f"ip:{client_ip(request)}", "authentication requests from this address")
    except ApiError:
        RATE_LIMITED.labels("auth").inc()
        raise


async def idempotency_key(
    key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=r"^[!-~]{1,200}$",
            description=(
                "Makes a retried submission return the first one's result (1-200 printable ASCII characters, "
                "no spaces)."
            ),
        ),
    ] = None,
) -> str | None:
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > 200 or any(not (0x21 <= ord(c) <= 0x7E) for c in key):
        raise bad_request("Idempotency-Key must be 1 to 200 printable ASCII characters without spaces")
    return key


CallerDep = Annotated[Caller, Depends(limited_caller)]
PasswordCallerDep = Annotated[Caller, Depends(password_caller)]
AdminDep = Annotated[Caller, Depends(admin_caller)]
GatewayDep = Annotated[Gateway, Depends(gateway)]
IdempotencyDep = Annotated[str | None, Depends(idempotency_key)]
