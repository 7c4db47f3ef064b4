"""POST /auth/register, /auth/login, /auth/api-keys."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from gateway.deps import CallerDep, GatewayDep, PasswordCallerDep, auth_rate_limit, client_ip
from gateway.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyInfo,
    Credentials,
    ErrorBody,
    RegisteredUser,
    Registration,
    Token,
)
from idlock.telemetry import request_id_var

router = APIRouter(
    prefix="/auth", tags=["auth"], responses={400: {"model": ErrorBody}, 429: {"model": ErrorBody}}
)


@router.post(
    "/register",
    status_code=201,
    response_model=RegisteredUser,
    dependencies=[Depends(auth_rate_limit)],
    responses={409: {"model": ErrorBody}},
)
async def register(body: Registration, request: Request, gw: GatewayDep) -> RegisteredUser:
    """Create a user (never an administrator: operators make those with `idlock admin create`)."""
    p = await gw.users.register(
        body.email,
        body.password,
        name=body.name,
        client_ip=client_ip(request),
        request_id=request_id_var.get(),
    )
    return RegisteredUser(user_id=p.user_id, email=p.email, name=p.name, is_admin=p.is_admin)


@router.get(
    "/me", operation_id="who_am_i", response_model=RegisteredUser, responses={401: {"model": ErrorBody}}
)
async def who_am_i(who: CallerDep) -> RegisteredUser:
    """The signed-in user (for the JWT or API key sent)."""
    p = who.principal
    return RegisteredUser(user_id=p.user_id, email=p.email, name=p.name, is_admin=p.is_admin)


@router.post(
    "/login",
    response_model=Token,
    dependencies=[Depends(auth_rate_limit)],
    responses={401: {"model": ErrorBody}},
)
async def login(body: Credentials, request: Request, gw: GatewayDep) -> Token:
    """Exchange email and password for a JWT (HS256) to send as `Authorization: Bearer <token>`."""
    token, exp = await gw.users.login(
        body.email, body.password, client_ip=client_ip(request), request_id=request_id_var.get()
    )
    return Token(access_token=token, expires_in=gw.settings.jwt_expiry_s, expires_at=exp)


@router.post(
    "/api-keys",
    status_code=201,
    operation_id="create_api_key",
    response_model=ApiKeyCreated,
    responses={
        201: {
            "links": {
                "RevokeApiKey": {
                    "operationId": "revoke_api_key",
                    "parameters": {"api_key_id": "$response.body#/api_key_id"},
                }
            }
        },
        401: {"model": ErrorBody},
    },
)
async def create_api_key(
    who: PasswordCallerDep, gw: GatewayDep, body: ApiKeyCreate | None = None
) -> ApiKeyCreated:
    """Create an API key for a service client (send it as `X-API-Key`). The key is shown only once."""
    row, plaintext = await gw.users.create_api_key(
        who.principal, (body.name if body else ""), client_ip=who.client_ip, request_id=who.request_id
    )
    return ApiKeyCreated(
        api_key_id=row.id, api_key=plaintext, name=row.name, created_at=row.created_at.isoformat()
    )


@router.get("/api-keys", response_model=list[ApiKeyInfo])
async def list_api_keys(who: PasswordCallerDep, gw: GatewayDep) -> list[ApiKeyInfo]:
    """Your API keys (never the keys themselves)."""
    return [
        ApiKeyInfo(
            api_key_id=r.id,
            name=r.name,
            created_at=r.created_at.isoformat(),
            last_used_at=r.last_used_at.isoformat() if r.last_used_at else None,
            revoked=r.revoked_at is not None,
        )
        for r in await gw.users.list_api_keys(who.principal)
    ]


@router.delete(
    "/api-keys/{api_key_id}",
    status_code=204,
    operation_id="revoke_api_key",
    responses={404: {"model": ErrorBody}},
)
async def revoke_api_key(api_key_id: str, who: PasswordCallerDep, gw: GatewayDep) -> None:
    """Revoke one of your API keys."""
    await gw.users.revoke_api_key(
        who.principal, api_key_id, client_ip=who.client_ip, request_id=who.request_id
    )
