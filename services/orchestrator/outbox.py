"""The transactional outbox: a message that announces a job's change (its work on `idlock.jobs.generate`, and
`job.queued` / `succeeded` / `failed` / `cancelled`) is written in the same transaction as the change, and the
relay publishes it as soon as NATS answers. So a job accepted while NATS is down starts within seconds of NATS
coming back, whichever process crashed meanwhile: any replica's relay publishes what is due.

A job started where it was accepted holds its work message (`local_start.py`): it comes due only when the job's
lease runs out, and the job's end deletes it. A message is deleted once JetStream acknowledged it; its `msg_id`
(Nats-Msg-Id) makes a second publish (two relays, a crash between publish and delete) a duplicate the stream
drops. No gRPC here; NATS only through the `publish` callable the runtime gives the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from google.protobuf.message import Message
from opentelemetry import propagate
from sqlalchemy import and_, delete, or_, select, update

from idlock import subjects
from idlock.db import Database
from idlock.v1 import events_pb2
from services.orchestrator.job_events import JobEvents
from services.orchestrator.models import Job, OutboxMessage, utcnow

log = logging.getLogger("idlock.orchestrator.outbox")

OUTBOX = OutboxMessage.__table__
WORK = "work"
#: a message never tried is left this long to the process that wrote it (it publishes at once)
OTHERS_AFTER_S = 2.0
QUEUED = "event:queued"
#: the events that end a job
ENDINGS = frozenset({"event:succeeded", "event:failed", "event:cancelled"})


@dataclass(frozen=True)
class Outgoing:
    """One message to write to the outbox with a change."""

    job_id: str
    kind: str  # WORK, or "event:<verb>"
    msg_id: str
    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)
    #: due this long after it is written (a job run where it was accepted holds its work: `local_start.py`)
    hold_s: float = 0.0

    def values(self) -> dict[str, Any]:
        now = utcnow()
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "msg_id": self.msg_id,
            "payload": self.payload,
            "headers": dict(self.headers),
            "created_at": now,
            "attempts": 0,
            "last_error": "",
            "next_at": now + timedelta(seconds=self.hold_s),
        }


def _trace() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)  # the trace of the request that made the change goes along
    return carrier


def work(job: Job, msg_id: str, hold_s: float = 0.0) -> Outgoing:
    """The job's work message (ids only: a prompt never sits in a stream), due in `hold_s`."""
    message = events_pb2.GenerateJobWork(
        job_id=job.id,
        owner_id=job.owner_id,
        character_id=job.character_id,
        video=bool((job.options or {}).get("video")),
    )
    return Outgoing(job.id, WORK, msg_id, message.SerializeToString(), _trace(), hold_s)


def event(verb: str, ev: events_pb2.JobEvent, msg_id: str) -> Outgoing:
    return Outgoing(ev.job_id, f"event:{verb}", msg_id, ev.SerializeToString(), _trace())


async def insert(conn: Any, messages: Sequence[Outgoing]) -> None:
    """Write `messages` in the caller's transaction."""
    if messages:
        await conn.execute(OUTBOX.insert(), [m.values() for m in messages])


def decode(row: Any) -> tuple[str, Message]:
    """The subject and message of an outbox row."""
    if row.kind == WORK:
        return subjects.JOB_GENERATE, events_pb2.GenerateJobWork.FromString(row.payload)
    verb = row.kind.removeprefix("event:")
    return subjects.event_subject("job", verb), events_pb2.JobEvent.FromString(row.payload)


Publish = Callable[[str, Message, str, dict[str, str]], Awaitable[None]]


class Relay:
    """Publishes the outbox in order, oldest first; a failed publish waits a doubling delay (at most
    `max_backoff_s`) and holds back the messages after it, so a job's events never overtake each other."""

    def __init__(
        self,
        db: Database,
        publish: Publish,
        *,
        poll_s: float = 1.0,
        max_backoff_s: float = 2.0,
        batch: int = 200,
    ) -> None:
        self.db = db
        self.publish = publish
        self.poll_s = poll_s
        self.max_backoff_s = max_backoff_s
        self.batch = batch
        self._wake = asyncio.Event()
        #: this process's job events: a job's progress still on its way goes out before its ending, none after
        self.job_events: JobEvents | None = None

    def wake(self) -> None:
        """A change was committed here: publish now rather than at the next poll."""
        self._wake.set()

    async def loop(self) -> None:
        while True:
            woken = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
                woken = True
            self._wake.clear()
            try:
                while await self.once(local=woken) >= self.batch:  # a backlog: go on at once
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay round failed")

    async def once(self, *, local: bool = True) -> int:
        """Publish what is due; returns how many were published. A poll (`local=False`) leaves a message that
        was never tried to its own process for `OTHERS_AFTER_S`: that process publishes it at once, after the
        job's progress events it still has on their way."""
        now = utcnow()
        due = OUTBOX.c.next_at <= now
        if not local:
            fresh = OUTBOX.c.next_at > now - timedelta(seconds=OTHERS_AFTER_S)
            due = and_(due, or_(OUTBOX.c.attempts > 0, ~fresh))
        async with self.db.connect(read_only=True) as c:
            rows = (await c.execute(select(OUTBOX).where(due).order_by(OUTBOX.c.id).limit(self.batch))).all()
        # every message goes on the wire in order at once; the acknowledgements are awaited together
        sent: list[tuple[Any, asyncio.Future]] = []
        for row in rows:
            subject, message = decode(row)
            if row.kind not in (WORK, QUEUED) and self.job_events is not None:
                if row.kind in ENDINGS:  # the ending is committed: no progress of the job goes out from now
                    self.job_events.ended(row.job_id)
                await self.job_events.flush(row.job_id)
            sent.append(
                (
                    row,
                    asyncio.ensure_future(
                        self.publish(subject, message, row.msg_id, dict(row.headers or {}))
                    ),
                )
            )
            await asyncio.sleep(0)  # this one is written before the next
            if row.kind == QUEUED and self.job_events is not None:
                self.job_events.release(row.job_id)  # a job started here: its progress may follow now
        done: list[int] = []
        failed: tuple[Any, BaseException] | None = None
        for row, publish in sent:
            try:
                await publish
            except Exception as e:  # noqa: BLE001 - NATS away: this row backs off; what follows is tried again
                failed = failed or (row, e)
                continue
            if failed is None:
                done.append(row.id)
        if done:
            async with self.db.connect() as c:
                await c.execute(delete(OUTBOX).where(OUTBOX.c.id.in_(done)))
        if failed is not None:
            await self._failed(*failed)
        return len(done)

    async def _failed(self, row: Any, e: BaseException) -> None:
        attempts = (row.attempts or 0) + 1
        delay = min(0.25 * 2 ** (attempts - 1), self.max_backoff_s)
        if attempts == 1 or attempts % 20 == 0:
            log.warning(
                "outbox: publishing %s (%s) failed, attempt %d: %s", row.kind, row.job_id, attempts, e
            )
        async with self.db.connect() as c:
            await c.execute(
                update(OUTBOX)
                .where(OUTBOX.c.id == row.id)
                .values(
                    attempts=attempts,
                    last_error=str(e)[:500],
                    next_at=utcnow() + timedelta(seconds=delay),
                )
            )

    async def pending(self, job_id: str = "") -> list[Any]:
        """What is still to publish (of one job, when given), oldest first: the rows without their payloads."""
        q = select(*(col for col in OUTBOX.c if col.name != "payload")).order_by(OUTBOX.c.id)
        if job_id:
            q = q.where(OUTBOX.c.job_id == job_id)
        async with self.db.connect(read_only=True) as c:
            return list((await c.execute(q)).all())


__all__ = ["WORK", "Outgoing", "Relay", "decode", "event", "insert", "work"]
