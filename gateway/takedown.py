"""The report and takedown use cases (`reports.py` keeps the records and the freeze): file a report (audited, an
event out), list reports, resolve one by unfreezing or erasing the character. Routers call these."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.errors import ApiError
from gateway.models import Report
from idlock import subjects
from idlock.v1 import events_pb2

if TYPE_CHECKING:
    from gateway.core import Caller, Gateway


def report_view(r: Report) -> dict[str, Any]:
    return {
        "report_id": r.id,
        "reporter_id": r.reporter_id,
        "target_type": r.target_type,
        "target_id": r.target_id,
        "character_id": r.character_id or None,
        "reason": r.reason,
        "details": r.details,
        "status": r.status,
        "resolution": r.resolution or None,
        "note": r.note,
        "created_at": r.created_at.isoformat(),
        "resolved_at": r.resolved_at.isoformat() if r.resolved_at else None,
        "resolved_by": r.resolved_by or None,
    }


async def file_report(
    gw: Gateway, caller: Caller, *, character_id: str, job_id: str, reason: str, details: str
) -> dict[str, Any]:
    """202 whatever the id names: the reporter learns nothing about it."""
    target_type, target_id = ("character", character_id) if character_id else ("job", job_id)
    report = await gw.reports.file(caller.user_id, target_type, target_id, reason, details)
    await gw.audit(
        caller,
        "report_file",
        "report",
        report.id,
        target_type=target_type,
        target_id=target_id,
        reason=reason,
        froze=report.character_id or None,
    )
    event = events_pb2.ReportFiled(report_id=report.id, character_id=report.character_id, reason=reason)
    event.at.GetCurrentTime()
    await gw.events.publish(subjects.REPORT_FILED, event, f"report.filed.{report.id}")
    return {"report_id": report.id, "status": "open"}


async def list_reports(gw: Gateway, status: str, limit: int) -> dict[str, Any]:
    return {"items": [report_view(r) for r in await gw.reports.list(status, limit)]}


async def resolve_report(
    gw: Gateway, admin: Caller, report_id: str, action: str, note: str
) -> dict[str, Any]:
    """Unfreeze, or erase the character for its owner (every store, as the owner's DELETE would)."""
    report = await gw.reports.open_report(report_id)
    erasure = None
    if action == "erase" and report.character_id:
        target = await gw.reports.target("character", report.character_id)
        if not target.owner_id:
            raise ApiError(
                409,
                "owner_unknown",
                f"character {report.character_id} has no known owner (it may be erased already); resolve the "
                "report with unfreeze",
            )
        erasure = await gw.erase_character(admin, target.owner_id, report.character_id)
        if not erasure["deleted"]:
            raise ApiError(
                503,
                "erasure_incomplete",
                "the character is not erased everywhere yet; the report stays open (resolve it again)",
                details=erasure["report"],
            )
    resolved = await gw.reports.resolve(report, action, admin.user_id, note)
    await gw.audit(
        admin,
        "report_resolve",
        "report",
        report.id,
        resolution=action,
        character_id=report.character_id or None,
    )
    event = events_pb2.ReportResolved(
        report_id=report.id, character_id=report.character_id, action=action, admin_id=admin.user_id
    )
    event.at.GetCurrentTime()
    await gw.events.publish(subjects.REPORT_RESOLVED, event, f"report.resolved.{report.id}")
    return report_view(resolved)


__all__ = ["file_report", "list_reports", "report_view", "resolve_report"]
