"""The job store and its state machine. No gRPC or NATS here: callers publish and serve.

queued ──claim──► running ──finish──► succeeded | failed | needs_more_refs
   │                 │
   └──── cancel ─────┴──► cancelled          (terminal states never change again)

A worker *claims* a job before running it: the claim takes a lease (owner + expiry) that the worker renews while
it runs, so a duplicate delivery of the same job (a reconciler re-enqueue, a redelivery racing a slow worker) waits
for the lease instead of rendering twice. Every write a worker makes is conditional on the job still running,
so a cancellation between two steps is never overwritten. Before its first effect outside the job (recording the
scene in memory) the worker *commits* the job (`committed_at`): a cancel after that comes too late, and the job
ends succeeded with `error_code` cancel_too_late, so a cancelled job never leaves an episode.

The messages a change announces (work, job events) go into the outbox in the change's transaction (`outbox.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from idlock.db import Database
from idlock.errors import InvalidInput, NotFound, PreconditionFailed, QuotaExceeded
from idlock.pages import BAD_TOKEN, decode_token, encode_token
from services.orchestrator import outbox
from services.orchestrator.feedback import FeedbackRecords, JobChanges
from services.orchestrator.models import (
    ACTIVE,
    CANCELLED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    Job,
    Usage,
    aware,
    utcnow,
)

#: the outbox messages a change announces, built from the job's row
Announce = Callable[[Job], Sequence[outbox.Outgoing]]

MAX_PAGE = 100
DEFAULT_PAGE = 20


#: the hot paths (submit, claim, step writes, finish, reads while watching) use Core statements on the table: the
#: ORM's session and unit of work cost about twice the statement itself here
JOBS = Job.__table__
OUTBOX = outbox.OUTBOX


def _held_work(job_id: str) -> Any:
    """The work message written with a job (its id is the job's): held while the job runs where it was accepted."""
    return and_(OUTBOX.c.job_id == job_id, OUTBOX.c.kind == outbox.WORK, OUTBOX.c.msg_id == job_id)


def _job(row: Any) -> Job | None:
    """A detached Job from a Core row."""
    return None if row is None else Job(**row._mapping)


async def _read(conn: Any, job_id: str) -> Job | None:
    return _job((await conn.execute(select(JOBS).where(JOBS.c.id == job_id))).first())


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Claim:
    """Outcome of `claim`: "claimed" (run it), "terminal" (ack, nothing to do), "missing" (unknown job),
    "busy" (another live worker holds the lease until `lease_until`)."""

    outcome: str
    job: Job | None
    lease_until: datetime | None = None


def _encode_token(job: Job) -> str:
    return encode_token({"t": aware(job.created_at).isoformat(), "i": job.id})


def _decode_token(token: str) -> tuple[datetime, str]:
    d = decode_token(token)
    try:
        return datetime.fromisoformat(d["t"]), str(d["i"])
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidInput(BAD_TOKEN) from e


class JobStore(FeedbackRecords):
    def __init__(self, db: Database) -> None:
        self.db = db
        self.changes = JobChanges()

    # --- submission -------------------------------------------------------------------------------------------

    async def find_by_key(self, owner_id: str, key: str) -> Job | None:
        if not key:
            return None
        async with self.db.connect(read_only=True) as c:
            q = select(JOBS).where(JOBS.c.owner_id == owner_id, JOBS.c.idempotency_key == key)
            return _job((await c.execute(q)).first())

    async def create(
        self,
        *,
        owner_id: str,
        character_id: str,
        prompt: str,
        pose_image_uri: str = "",
        style_overrides: list[str] | None = None,
        options: Mapping[str, Any] | None = None,
        idempotency_key: str = "",
        max_active: int | None = None,
        job_id: str | None = None,
        announce: Announce | None = None,
        cast: list[dict[str, str]] | None = None,
    ) -> tuple[Job, bool]:
        """A new queued job, or (with an idempotency key already used by this owner) the existing one. What
        `announce` returns for the new job is written to the outbox in the same transaction."""
        existing = await self.find_by_key(owner_id, idempotency_key)
        if existing is not None:
            return existing, False
        now = utcnow()
        values: dict[str, Any] = {
            "id": job_id or new_job_id(),
            "owner_id": owner_id,
            "character_id": character_id,
            "prompt": prompt,
            "pose_image_uri": pose_image_uri,
            "style_overrides": list(style_overrides or []),
            "options": dict(options or {}),
            "idempotency_key": idempotency_key or None,
            "status": QUEUED,
            "step": "",
            "attempts": 0,
            "requeues": 0,
            "checkpoint": {},
            "result_image": {},
            "metrics": {},
            "error_code": "",
            "error_message": "",
            "lease_owner": "",
            "lease_until": None,
            "created_at": now,
            "updated_at": now,
            "started_at": None,
            "finished_at": None,
            "waiting_for": "",
            "cast_members": list(cast) if cast else None,
        }
        try:
            async with self.db.connect() as c:
                if max_active is not None:
                    active = (
                        await c.execute(
                            select(func.count())
                            .select_from(JOBS)
                            .where(JOBS.c.owner_id == owner_id, JOBS.c.status.in_(ACTIVE))
                        )
                    ).scalar_one()
                    if active >= max_active:
                        raise QuotaExceeded(
                            f"owner {owner_id} already has {active} queued or running jobs (limit {max_active}); "
                            "wait for one to finish or cancel one",
                            details={"active": active, "limit": max_active},
                        )
                await c.execute(JOBS.insert().values(**values))
                if announce is not None:
                    await outbox.insert(c, announce(Job(**values)))
        except IntegrityError:
            # a concurrent submission with the same idempotency key won
            existing = await self.find_by_key(owner_id, idempotency_key)
            if existing is None:
                raise
            return existing, False
        return Job(**values), True

    # --- reads ------------------------------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        async with self.db.connect(read_only=True) as c:
            return await _read(c, job_id)

    async def get_owned(self, job_id: str, owner_id: str) -> Job:
        """The job, or NotFound when it does not exist or belongs to another owner (never says which)."""
        if not job_id:
            raise InvalidInput("job_id is required")
        if not owner_id:
            raise InvalidInput("owner_id is required")
        job = await self.get(job_id)
        # an erased character's job is a tombstone: as unknown to its owner as to anyone
        if job is None or job.owner_id != owner_id or job.erased_at is not None:
            raise NotFound(f"job {job_id} not found")
        return job

    async def list(
        self, owner_id: str, *, character_id: str = "", page_size: int = 0, page_token: str = ""
    ) -> tuple[list[Job], str]:
        """The owner's jobs, newest first, a page at a time."""
        if not owner_id:
            raise InvalidInput("owner_id is required")
        if page_size < 0:
            raise InvalidInput(f"page_size must be >= 0, got {page_size}")
        size = min(page_size or DEFAULT_PAGE, MAX_PAGE)
        q = select(Job).where(Job.owner_id == owner_id, Job.erased_at.is_(None))
        if character_id:
            q = q.where(Job.character_id == character_id)
        if page_token:
            t, i = _decode_token(page_token)
            q = q.where(or_(Job.created_at < t, and_(Job.created_at == t, Job.id < i)))
        q = q.order_by(Job.created_at.desc(), Job.id.desc()).limit(size + 1)
        async with self.db.session() as s:
            rows = list((await s.execute(q)).scalars())
        token = _encode_token(rows[size - 1]) if len(rows) > size else ""
        return rows[:size], token

    # --- cancellation -----------------------------------------------------------------------------------------

    async def cancel(self, job_id: str, owner_id: str, announce: Announce | None = None) -> tuple[Job, bool]:
        """Cancel a queued or running job. Returns (job, changed); a terminal job is FAILED_PRECONDITION, and so
        is a job past its effect boundary (reason cancel_too_late: it goes on and says the cancel came late)."""
        job = await self.get_owned(job_id, owner_id)
        if job.status == CANCELLED:
            return job, False
        if job.status in TERMINAL:
            raise PreconditionFailed(
                f"job already {job.status}", details={"job_id": job_id, "status": job.status}
            )
        now = utcnow()
        too_late = False
        async with self.db.connect() as c:
            res = await c.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.status.in_(ACTIVE), JOBS.c.committed_at.is_(None))
                .values(
                    status=CANCELLED,
                    updated_at=now,
                    finished_at=now,
                    error_code="cancelled",
                    error_message="cancelled by the owner",
                    waiting_for="",
                )
            )
            changed = res.rowcount == 1
            if changed and announce is not None:
                await outbox.insert(c, announce(job))
            elif not changed:
                late = await c.execute(
                    update(JOBS)
                    .where(JOBS.c.id == job_id, JOBS.c.status == RUNNING, JOBS.c.committed_at.is_not(None))
                    .values(cancel_requested_at=now)
                )
                too_late = late.rowcount == 1
        if changed:
            self.changes.changed(job_id)
        job = await self.get(job_id)
        assert job is not None
        if too_late:
            err = PreconditionFailed(
                f"too late to cancel job {job_id}: it is recording its scene and will end succeeded "
                "(with error_code cancel_too_late)",
                details={"job_id": job_id, "status": job.status},
            )
            err.reason = "cancel_too_late"
            raise err
        if not changed and job.status != CANCELLED:
            raise PreconditionFailed(
                f"job already {job.status}", details={"job_id": job_id, "status": job.status}
            )
        return job, changed

    # --- the worker's side ------------------------------------------------------------------------------------

    async def claim(self, job_id: str, worker_id: str, lease_s: float) -> Claim:
        """Take the job for `worker_id`: queued → running (attempts + 1), or take over a running job whose lease
        expired (its worker died). A lease held by another live worker answers "busy"."""
        now = utcnow()
        async with self.db.connect() as c:
            # the usual case is one conditional UPDATE; the job is read only to say why it was not taken
            job = _job(
                (
                    await c.execute(
                        update(JOBS)
                        .where(
                            JOBS.c.id == job_id,
                            JOBS.c.status.in_(ACTIVE),
                            or_(
                                JOBS.c.lease_owner == "",
                                JOBS.c.lease_owner == worker_id,
                                JOBS.c.lease_until.is_(None),
                                JOBS.c.lease_until <= now,
                            ),
                        )
                        .values(
                            status=RUNNING,
                            attempts=func.coalesce(JOBS.c.attempts, 0) + 1,
                            lease_owner=worker_id,
                            lease_until=now + timedelta(seconds=lease_s),
                            started_at=func.coalesce(JOBS.c.started_at, now),
                            updated_at=now,
                            error_code="",
                            error_message="",
                        )
                        .returning(*JOBS.c)
                    )
                ).first()
            )
            if job is None:
                job = await _read(c, job_id)
                if job is None:
                    return Claim("missing", None)
                if job.status in TERMINAL:
                    return Claim("terminal", job)
                return Claim("busy", job, aware(job.lease_until))
        self.changes.changed(job_id, job)
        return Claim("claimed", job)

    async def renew(self, job_id: str, worker_id: str, lease_s: float, *, hold_work: bool = False) -> bool:
        """Extend the lease; with `hold_work` (a job started where it was accepted) its held work message comes
        due with the new expiry, not before."""
        until = utcnow() + timedelta(seconds=lease_s)
        async with self.db.connect() as c:
            res = await c.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.lease_owner == worker_id, JOBS.c.status == RUNNING)
                .values(lease_until=until)
            )
            if res.rowcount == 1 and hold_work:
                await c.execute(update(OUTBOX).where(_held_work(job_id)).values(next_at=until))
            return res.rowcount == 1

    async def release_work(self, job_id: str, delay_s: float = 0.0) -> bool:
        """Hand a job started where it was accepted to the queue: its held work message comes due in `delay_s`.
        False when there is none (already published, or the job ended)."""
        async with self.db.connect() as c:
            res = await c.execute(
                update(OUTBOX).where(_held_work(job_id)).values(next_at=utcnow() + timedelta(seconds=delay_s))
            )
            return res.rowcount > 0

    async def drop_work(self, job_id: str) -> None:
        """Delete the held work message of a job that needs no delivery (it was cancelled or erased)."""
        async with self.db.connect() as c:
            await c.execute(delete(OUTBOX).where(_held_work(job_id)))

    async def release(self, job_id: str, worker_id: str) -> None:
        async with self.db.connect() as c:
            await c.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.lease_owner == worker_id)
                .values(lease_owner="", lease_until=None)
            )

    async def save_steps(
        self,
        job_id: str,
        worker_id: str,
        checkpoint: Mapping[str, Mapping[str, Any]],
        *,
        step: str,
        commit: bool = False,
    ) -> bool:
        """Store the worker's step results (all of them: it holds the lease, so no one else writes them) and the
        step now current, in one conditional UPDATE; False when the job is no longer running for this worker
        (cancelled, or its lease went to another). `commit`: the job passes its effect boundary (see above)."""
        now = utcnow()
        values: dict[str, Any] = {
            "checkpoint": {k: dict(v) for k, v in checkpoint.items()},
            "step": step,
            "updated_at": now,
        }
        stmt = (
            update(JOBS)
            .where(JOBS.c.id == job_id, JOBS.c.status == RUNNING, JOBS.c.lease_owner == worker_id)
            .values(**values)
        )
        if commit:
            stmt = stmt.values(committed_at=func.coalesce(JOBS.c.committed_at, now)).returning(
                JOBS.c.committed_at
            )
        async with self.db.connect() as c:
            res = await c.execute(stmt)
            if commit:
                committed = res.first()
                if committed is None:
                    return False
                values["committed_at"] = committed.committed_at
            elif res.rowcount != 1:
                return False
        self.changes.changed(job_id, values)
        return True

    async def set_waiting(
        self, job_id: str, worker_id: str, waiting_for: str, since: datetime | None
    ) -> bool:
        """Say what the running job waits for (a peer, "storage") and since when; "" when it no longer waits.
        False when the job is no longer running for this worker."""
        values = {"waiting_for": waiting_for, "waiting_since": since, "updated_at": utcnow()}
        async with self.db.connect() as c:
            res = await c.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.status == RUNNING, JOBS.c.lease_owner == worker_id)
                .values(**values)
            )
        if res.rowcount != 1:
            return False
        self.changes.changed(job_id, values)
        return True

    async def finish(
        self,
        job_id: str,
        status: str,
        *,
        worker_id: str | None = None,
        result_image: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        error_code: str = "",
        error_message: str = "",
        usage: Mapping[str, Any] | None = None,
        checkpoint: Mapping[str, Any] | None = None,
        announce: Announce | None = None,
    ) -> Job | None:
        """Move a queued/running job to a terminal state (with the usage record and the `announce` messages, in
        one transaction); `checkpoint` replaces the stored step results (the worker's full set, written with the
        end instead of step by step). Returns the ended row; None when it was already terminal (e.g. cancelled
        meanwhile) or leased by another worker. A succeeded job that a cancel reached too late says so."""
        if status not in TERMINAL:
            raise InvalidInput(f"{status!r} is not a terminal job state")
        now = utcnow()
        cond = [JOBS.c.id == job_id, JOBS.c.status.in_(ACTIVE)]
        if worker_id is not None:
            cond.append(JOBS.c.lease_owner == worker_id)
        values: dict[str, Any] = {
            "status": status,
            "updated_at": now,
            "finished_at": now,
            "error_code": error_code,
            "error_message": error_message,
            "lease_owner": "",
            "lease_until": None,
            "waiting_for": "",
            "waiting_since": None,
        }
        if status == SUCCEEDED:
            values["error_code"] = case(
                (JOBS.c.cancel_requested_at.is_not(None), "cancel_too_late"), else_=error_code
            )
            values["error_message"] = case(
                (
                    JOBS.c.cancel_requested_at.is_not(None),
                    "the cancel came after the scene was being recorded: the job finished",
                ),
                else_=error_message,
            )
        if result_image is not None:
            values["result_image"] = dict(result_image)
        if metrics is not None:
            values["metrics"] = dict(metrics)
        if checkpoint is not None:
            values["checkpoint"] = dict(checkpoint)
        async with self.db.connect() as c:
            ended = _job(
                (await c.execute(update(JOBS).where(*cond).values(**values).returning(*JOBS.c))).first()
            )
            if ended is None:
                return None
            # an ended job has no work to deliver (a job started where it was accepted holds its message)
            await c.execute(delete(OUTBOX).where(OUTBOX.c.job_id == job_id, OUTBOX.c.kind == outbox.WORK))
            if announce is not None:
                await outbox.insert(c, announce(ended))
            if usage is not None:  # one usage record per job, also when a finish is replayed
                insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
                await c.execute(
                    insert(Usage.__table__)
                    .values(job_id=job_id, created_at=now, **dict(usage))
                    .on_conflict_do_nothing(index_elements=[Usage.__table__.c.job_id])
                )
        self.changes.changed(job_id, ended)
        return ended

    # --- the reconciler ---------------------------------------------------------------------------------------

    async def stuck(self, older_than_s: float, limit: int = 100) -> list[Job]:
        """Queued/running jobs untouched for `older_than_s` whose lease (if any) has expired."""
        now = utcnow()
        cutoff = now - timedelta(seconds=older_than_s)
        async with self.db.session() as s:
            rows = (
                await s.execute(
                    select(Job)
                    .where(
                        Job.status.in_(ACTIVE),
                        Job.updated_at < cutoff,
                        or_(Job.lease_until.is_(None), Job.lease_until < now),
                    )
                    .order_by(Job.updated_at)
                    .limit(limit)
                )
            ).scalars()
            return list(rows)

    async def requeue(self, job: Job) -> int | None:
        """Count one re-enqueue, touch the row and put the job's work in the outbox (one transaction); None when
        the job moved on since it was read."""
        async with self.db.connect() as c:
            res = await c.execute(
                update(JOBS)
                .where(JOBS.c.id == job.id, JOBS.c.status.in_(ACTIVE), JOBS.c.updated_at == job.updated_at)
                .values(requeues=func.coalesce(JOBS.c.requeues, 0) + 1, updated_at=utcnow())
                .returning(JOBS.c.requeues)
            )
            requeues = res.scalar_one_or_none()
            if requeues is None:
                return None
            await outbox.insert(c, [outbox.work(job, f"{job.id}:r{requeues}")])
        self.changes.changed(job.id)
        return requeues
