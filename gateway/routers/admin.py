"""Administrators only: component health, Prometheus metrics, consumption per user and day."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from gateway.deps import AdminDep, GatewayDep
from gateway.metrics import exposition
from gateway.schemas import ErrorBody, MeshHealth, UsagePage
from gateway.usage import usage_report

router = APIRouter(
    prefix="/api/v1/admin", tags=["admin"], responses={401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
)


@router.get("/health", response_model=MeshHealth)
async def admin_health(who: AdminDep, gw: GatewayDep) -> dict[str, Any]:
    """gRPC health of every service, NATS and the gateway's database."""
    return await gw.health()


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def admin_metrics(who: AdminDep) -> Response:
    """Prometheus metrics of the gateway (requests, latencies, rate-limit refusals, gRPC client calls)."""
    body, content_type = exposition()
    return Response(body, media_type=content_type)


@router.get("/usage", response_model=UsagePage, responses={400: {"model": ErrorBody}})
async def admin_usage(
    who: AdminDep,
    gw: GatewayDep,
    user_id: Annotated[str, Query(max_length=128, description="Only this user; empty: every user.")] = "",
    from_day: Annotated[
        str, Query(max_length=10, description="First day (UTC, YYYY-MM-DD); default: 29 days before to_day.")
    ] = "",
    to_day: Annotated[
        str, Query(max_length=10, description="Last day (UTC, YYYY-MM-DD); default: today.")
    ] = "",
    page_size: Annotated[int, Query(ge=1, le=500, description="Days (per user) per page.")] = 50,
    page_token: Annotated[str, Query(max_length=200)] = "",
) -> dict[str, Any]:
    """Consumption per user and day: jobs by status (the day they were submitted), renders by provider, credits
    and estimated cost from the usage records (the day they were billed)."""
    return await usage_report(gw, user_id, from_day, to_day, page_size, page_token)
