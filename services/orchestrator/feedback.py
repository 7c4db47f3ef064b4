"""Usage records and owners' feedback on the job store (`jobs.JobStore`), and the in-process signal that wakes a
job's watchers when this process changes it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator

from sqlalchemy import select

from idlock.db import Database
from idlock.errors import PreconditionFailed
from services.orchestrator.models import Feedback, Job, Usage, utcnow


class JobChanges:
    """Wakes this process's watchers of a job when this process changes it. Changes made by another replica are
    not signalled: watchers also look at the row every so often."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[asyncio.Event]] = {}

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[asyncio.Event]:
        changed = asyncio.Event()
        self._watchers.setdefault(job_id, set()).add(changed)
        try:
            yield changed
        finally:
            watchers = self._watchers.get(job_id, set())
            watchers.discard(changed)
            if not watchers:
                self._watchers.pop(job_id, None)

    def changed(self, job_id: str) -> None:
        for event in self._watchers.get(job_id, ()):
            event.set()


class FeedbackRecords:
    """The usage and feedback half of the job store."""

    db: Database
    get_owned: Callable[[str, str], Awaitable[Job]]  # JobStore's

    async def usage(self, job_id: str) -> Usage | None:
        async with self.db.session() as s:
            return await s.get(Usage, job_id)

    async def record_feedback(self, job_id: str, owner_id: str, rating: str, comment: str) -> Job:
        job = await self.get_owned(job_id, owner_id)
        if job.status != "succeeded":
            raise PreconditionFailed(
                f"feedback needs a succeeded job; job {job_id} is {job.status}",
                details={"job_id": job_id, "status": job.status},
            )
        now = utcnow()
        async with self.db.session() as s:
            row = await s.get(Feedback, (job_id, owner_id))
            if row is None:
                s.add(
                    Feedback(
                        job_id=job_id,
                        owner_id=owner_id,
                        character_id=job.character_id,
                        rating=rating,
                        comment=comment,
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                row.rating = rating
                row.comment = comment
                row.updated_at = now
        return job

    async def feedback(self, job_id: str) -> list[Feedback]:
        async with self.db.session() as s:
            return list((await s.execute(select(Feedback).where(Feedback.job_id == job_id))).scalars())
