"""Erasing a character's jobs, when memory says the character is gone (`idlock.events.character.deleted`).

Every job of the character (its own, and scenes of several it is in) becomes a tombstone: its row keeps id, owner, status and times (what a bill or an audit
needs) and loses its content (prompts, options, checkpoint, results, metrics, messages); its objects under
`jobs/<id>/` go, every version, as does its copy of a pose image fetched from a URL; feedback on it goes; usage rows keep their counts. The API then answers for the job
as if it never was. Each step is idempotent, so a redelivery after a crash midway finishes the work: the rows are
found by character, tombstoned or not, and their folders deleted again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import Text, delete, or_, select, update
from sqlalchemy import cast as sa_cast

from idlock.db import Database
from idlock.refs import pose_copy_key
from idlock.storage import ObjectStore
from services.orchestrator.feedback import JobChanges
from services.orchestrator.jobs import JOBS
from services.orchestrator.models import ACTIVE, CANCELLED, Feedback, utcnow

log = logging.getLogger("idlock.orchestrator")

#: how often a waiting erasure looks whether the cancelled jobs' workers have let go
POLL_S = 0.25


@dataclass(frozen=True)
class JobsErased:
    """What one erasure did."""

    character_id: str
    jobs: int
    objects: int
    feedback: int
    #: jobs that were queued or running, cancelled first
    cancelled: int


def of_character(character_id: str):
    """The jobs a character is in: its own, and scenes of several it is one of (its id in the stored cast)."""
    return or_(
        JOBS.c.character_id == character_id,
        # ids are letters, digits, "_" and "-"; quoted, a uuid matches no other
        sa_cast(JOBS.c.cast_members, Text).like(f'%"{character_id}"%'),
    )


def job_prefix(job_id: str) -> str:
    """Where a job's renders, frames and re-poses are stored."""
    return f"jobs/{job_id}/"


class JobErasure:
    def __init__(self, db: Database, store: ObjectStore, changes: JobChanges, *, lease_s: float) -> None:
        self.db = db
        self.store = store
        self.changes = changes
        self.lease_s = lease_s

    async def erase_character(self, character_id: str) -> JobsErased:
        cancelled = await self._cancel_active(character_id)
        if cancelled:
            await self._wait_for_workers(character_id)
        async with self.db.connect(read_only=True) as c:
            rows = (
                await c.execute(
                    select(JOBS.c.id, JOBS.c.owner_id, JOBS.c.pose_image_uri).where(
                        of_character(character_id)
                    )
                )
            ).all()
        ids = [r.id for r in rows]
        objects = 0
        for r in rows:
            objects += await self.store.delete_prefix(job_prefix(r.id))
            pose = pose_copy_key(self.store, r.pose_image_uri, r.owner_id)
            if pose:
                objects += await self.store.delete_prefix(pose)
        now = utcnow()
        async with self.db.connect() as c:
            await c.execute(
                update(JOBS)
                .where(of_character(character_id))
                .values(
                    prompt="",
                    cast_members=None,
                    pose_image_uri="",
                    style_overrides=[],
                    options={},
                    checkpoint={},
                    result_image={},
                    metrics={},
                    error_message="",
                    idempotency_key=None,
                    step="",
                    lease_owner="",
                    lease_until=None,
                    erased_at=now,
                )
            )
            res = await c.execute(delete(Feedback).where(Feedback.character_id == character_id))
            feedback = res.rowcount or 0
        await self.db.scrub()
        for job_id in ids:
            self.changes.changed(job_id)
        done = JobsErased(character_id, len(ids), objects, feedback, cancelled)
        log.info(
            "character %s erased from %d jobs (%d objects, %d feedback rows; %d cancelled first)",
            character_id,
            done.jobs,
            done.objects,
            done.feedback,
            done.cancelled,
        )
        return done

    async def _cancel_active(self, character_id: str) -> int:
        now = utcnow()
        async with self.db.connect() as c:
            res = await c.execute(
                update(JOBS)
                .where(of_character(character_id), JOBS.c.status.in_(ACTIVE))
                .values(
                    status=CANCELLED,
                    updated_at=now,
                    finished_at=now,
                    error_code="erased",
                    error_message="",
                )
            )
            return res.rowcount or 0

    async def _wait_for_workers(self, character_id: str) -> None:
        """A worker in the middle of a step may still write its output; it lets go of the job's lease when its
        next write is refused (the job is cancelled). Wait for that, at most one lease, before deleting."""
        deadline = asyncio.get_running_loop().time() + self.lease_s
        while asyncio.get_running_loop().time() < deadline:
            async with self.db.connect(read_only=True) as c:
                held = (
                    await c.execute(
                        select(JOBS.c.id).where(
                            of_character(character_id),
                            JOBS.c.lease_owner != "",
                            JOBS.c.lease_until > utcnow(),
                        )
                    )
                ).first()
            if held is None:
                return
            await asyncio.sleep(POLL_S)
        log.warning(
            "character %s: a worker still holds a job after %.0f s; erasing anyway",
            character_id,
            self.lease_s,
        )


__all__ = ["JobErasure", "JobsErased", "job_prefix"]
