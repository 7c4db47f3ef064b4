"""The administrators' consumption report: the orchestrator's usage per user and day, as the REST page."""

from __future__ import annotations

from typing import Any

from gateway.core import Gateway
from idlock.v1 import common_pb2
from idlock.v1 import orchestrator_service_pb2 as orch_pb2


async def usage_report(
    gw: Gateway, user_id: str, from_day: str, to_day: str, page_size: int, page_token: str
) -> dict[str, Any]:
    reply = await gw._rpc(
        "orchestrator",
        gw.orchestrator.ListUsage,
        orch_pb2.ListUsageRequest(
            owner_id=user_id,
            from_day=from_day,
            to_day=to_day,
            page=common_pb2.PageRequest(page_size=page_size, page_token=page_token),
        ),
    )
    return {
        "from_day": reply.from_day,
        "to_day": reply.to_day,
        "items": [
            {
                "user_id": d.owner_id,
                "day": d.day,
                "jobs_by_status": dict(d.jobs_by_status),
                "renders_by_provider": dict(d.renders_by_provider),
                "credits": d.credits,
                "cost_usd": round(d.cost_usd, 6),
                "job_seconds": round(d.job_seconds, 3),
            }
            for d in reply.days
        ],
        "next_page_token": reply.next_page_token or None,
    }
