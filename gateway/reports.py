"""Reports and takedown (seed §10). Any signed-in user reports a character, or a job of one; the character is frozen
at once (generation, its history, its jobs and their files answer 423 for everyone, the owner included) until an
administrator resolves the report: unfreeze it, or erase the character. A report never says whether the id it
names exists. Plain Python over the gateway's database: who owns a character and which character a job belongs to
come from the audit log the gateway writes when each is made."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from gateway import objects
from gateway.errors import ApiError, frozen_error
from gateway.models import AuditEntry, FrozenCharacter, Report, utcnow
from idlock.db import Database

OPEN, RESOLVED = "open", "resolved"
#: jobs whose character is remembered
JOB_CACHE = 10_000


@dataclass(frozen=True)
class Target:
    """What a report names, as far as the gateway knows it ("" for what it does not)."""

    character_id: str
    owner_id: str


class Reports:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._job_characters: dict[str, str] = {}

    # ---- what a report is about ----------------------------------------------------------------------------

    async def _made(self, resource_type: str, resource_id: str, action: str) -> AuditEntry | None:
        q = (
            select(AuditEntry)
            .where(
                AuditEntry.resource_type == resource_type,
                AuditEntry.resource_id == resource_id,
                AuditEntry.action == action,
            )
            .order_by(AuditEntry.id)
            .limit(1)
        )
        async with self.db.session(read_only=True) as s:
            return (await s.execute(q)).scalar_one_or_none()

    async def character_of_job(self, job_id: str) -> str:
        """A job's character never changes: remembered, as every file of a page of results asks again."""
        known = self._job_characters.get(job_id)
        if known is None:
            submitted = await self._made("job", job_id, "job_submit")
            known = str((submitted.details or {}).get("character_id", "")) if submitted is not None else ""
            if len(self._job_characters) >= JOB_CACHE:
                self._job_characters.pop(next(iter(self._job_characters)))
            self._job_characters[job_id] = known
        return known

    async def target(self, target_type: str, target_id: str) -> Target:
        character_id = target_id if target_type == "character" else await self.character_of_job(target_id)
        if not character_id:
            return Target("", "")
        made = await self._made("character", character_id, "character_create")
        if made is None or await self._made("character", character_id, "character_delete") is not None:
            return Target("", "")
        return Target(character_id, made.user_id or "")

    # ---- filing ----------------------------------------------------------------------------------------------

    async def file(
        self, reporter_id: str, target_type: str, target_id: str, reason: str, details: str
    ) -> Report:
        """Record the report and freeze its character (when the id names one)."""
        target = await self.target(target_type, target_id)
        now = utcnow()
        report = Report(
            id=f"rep_{uuid.uuid4().hex}",
            reporter_id=reporter_id,
            target_type=target_type,
            target_id=target_id,
            character_id=target.character_id,
            reason=reason,
            details=details,
            status=OPEN,
            created_at=now,
        )
        async with self.db.session() as s:
            s.add(report)
        if target.character_id:
            try:
                async with self.db.session() as s:
                    s.add(
                        FrozenCharacter(character_id=target.character_id, report_id=report.id, frozen_at=now)
                    )
            except IntegrityError:
                pass  # frozen already, by an earlier report
        return report

    # ---- the freeze ----------------------------------------------------------------------------------------

    async def is_frozen(self, character_id: str) -> bool:
        if not character_id:
            return False
        async with self.db.session(read_only=True) as s:
            return await s.get(FrozenCharacter, character_id) is not None

    async def check(self, character_id: str) -> None:
        """423 while the character is frozen."""
        if await self.is_frozen(character_id):
            raise frozen_error(character_id)

    async def frozen_object(self, key: str) -> str:
        """The frozen character a stored file belongs to ("" for none): `characters/<id>/…`, `jobs/<id>/…`."""
        kind, _, rest = key.partition("/")
        ident = rest.partition("/")[0]
        if kind == objects.CHARACTERS:
            character_id = ident
        elif kind in (objects.JOBS, objects.REFINED):
            character_id = await self.character_of_job(ident)
        else:
            return ""
        return character_id if await self.is_frozen(character_id) else ""

    # ---- review ----------------------------------------------------------------------------------------------

    async def get(self, report_id: str) -> Report:
        async with self.db.session(read_only=True) as s:
            report = await s.get(Report, report_id)
        if report is None:
            raise ApiError(404, "not_found", f"report {report_id} not found")
        return report

    async def list(self, status: str, limit: int) -> list[Report]:
        q = select(Report).order_by(Report.created_at.desc(), Report.id.desc()).limit(limit)
        if status != "all":
            q = q.where(Report.status == status)
        async with self.db.session(read_only=True) as s:
            return list((await s.execute(q)).scalars())

    async def open_report(self, report_id: str) -> Report:
        report = await self.get(report_id)
        if report.status != OPEN:
            raise ApiError(
                409,
                "already_resolved",
                f"report {report_id} was resolved ({report.resolution}) at {report.resolved_at}",
            )
        return report

    async def resolve(self, report: Report, action: str, admin_id: str, note: str) -> Report:
        """Close the report; `erase` closes every open report of the character (it is gone). The freeze ends
        when no open report of the character is left."""
        same = Report.character_id == report.character_id
        scope = same if action == "erase" and report.character_id else Report.id == report.id
        async with self.db.session() as s:
            await s.execute(
                update(Report)
                .where(scope, Report.status == OPEN)
                .values(
                    status=RESOLVED, resolution=action, resolved_at=utcnow(), resolved_by=admin_id, note=note
                )
            )
            if report.character_id:
                left = await s.scalar(
                    select(func.count()).select_from(Report).where(same, Report.status == OPEN)
                )
                if not left:
                    await s.execute(
                        delete(FrozenCharacter).where(FrozenCharacter.character_id == report.character_id)
                    )
        return await self.get(report.id)


__all__ = ["Reports", "Target"]
