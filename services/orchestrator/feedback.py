"""Usage records and owners' feedback on the job store (`jobs.JobStore`), and the in-process signal that wakes a
job's watchers when this process changes it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from sqlalchemy import select

from idlock.db import Database
from idlock.errors import PreconditionFailed
from services.orchestrator.models import Feedback, Job, Usage, utcnow, with_values


class JobWatch:
    """One watcher's view of a job's changes in this process: what each change wrote, when it said so."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        #: since the last `take`: the row a change returned, the columns it set, or None (read the row)
        self._updates: list[Job | Mapping[str, Any] | None] = []

    def push(self, update: Job | Mapping[str, Any] | None) -> None:
        self._updates.append(update)
        self.changed.set()

    def take(self, job: Job) -> Job | None:
        """`job` with the changes signalled since the last take applied; None when the row has to be read
        (nothing was signalled, or a change did not say what it wrote)."""
        updates, self._updates = self._updates, []
        self.changed.clear()
        if not updates or any(u is None for u in updates):
            return None
        for update in updates:
            job = update if isinstance(update, Job) else with_values(job, update)
        return job


class JobChanges:
    """Wakes this process's watchers of a job when this process changes it, with what the change wrote when the
    writer knows it (the row its statement returned, or the columns it set), so that a watcher need not read the
    row again. Changes made by another replica are not signalled: watchers also look at the row every so often."""

    def __init__(self) -> None:
        self._watchers: dict[str, set[JobWatch]] = {}

    @contextlib.contextmanager
    def watch(self, job_id: str) -> Iterator[JobWatch]:
        watch = JobWatch()
        self._watchers.setdefault(job_id, set()).add(watch)
        try:
            yield watch
        finally:
            watchers = self._watchers.get(job_id, set())
            watchers.discard(watch)
            if not watchers:
                self._watchers.pop(job_id, None)

    def changed(self, job_id: str, update: Job | Mapping[str, Any] | None = None) -> None:
        """`update`: the job's row as the change left it, or the columns it set to plain values; None when the
        watchers have to read it."""
        for watch in self._watchers.get(job_id, ()):
            watch.push(update)


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
