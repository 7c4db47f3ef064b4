"""Administrators only: component health and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from gateway.deps import AdminDep, GatewayDep
from gateway.metrics import exposition
from gateway.schemas import ErrorBody, MeshHealth

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
