"""Reports (any signed-in user) and their review (administrators): seed §10's takedown."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from gateway import takedown
from gateway.deps import AdminDep, CallerDep, GatewayDep
from gateway.report_schemas import ReportAccepted, ReportIn, ReportList, ReportOut, ReportResolveIn
from gateway.schemas import ErrorBody

router = APIRouter(
    prefix="/api/v1",
    tags=["reports"],
    responses={400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 429: {"model": ErrorBody}},
)


@router.post("/report", status_code=202, operation_id="file_report", response_model=ReportAccepted)
async def file_report(body: ReportIn, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    """Report a character, or one of its jobs. The character is frozen at once (its generation, history, jobs
    and files answer 423 `frozen`, its owner included) until an administrator resolves the report. The answer
    is the same whether or not the id names anything."""
    return await takedown.file_report(
        gw,
        who,
        character_id=body.character_id,
        job_id=body.job_id,
        reason=body.reason,
        details=body.details,
    )


@router.get(
    "/admin/reports",
    operation_id="list_reports",
    response_model=ReportList,
    responses={403: {"model": ErrorBody}},
)
async def list_reports(
    who: AdminDep,
    gw: GatewayDep,
    status: Annotated[Literal["open", "resolved", "all"], Query(description="Which reports.")] = "open",
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many, newest first.")] = 100,
) -> dict[str, Any]:
    """Reports to review (administrators only)."""
    return await takedown.list_reports(gw, status, limit)


@router.post(
    "/admin/reports/{report_id}/resolve",
    operation_id="resolve_report",
    response_model=ReportOut,
    responses={
        403: {"model": ErrorBody},
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def resolve_report(
    report_id: str, body: ReportResolveIn, who: AdminDep, gw: GatewayDep
) -> dict[str, Any]:
    """Close a report: `unfreeze` the character, or `erase` it everywhere for its owner (administrators only)."""
    return await takedown.resolve_report(gw, who, report_id, body.action, body.note)
