"""Job events (`idlock.events.job.<verb>`): built from the job row, published in order per job. Progress events go
out in the background so that they never hold the next step up; the row stays the truth, so a progress event lost
to an outage is logged, not retried. The events that change what a job is (queued, succeeded, failed, cancelled)
go through the outbox instead (`outbox.py`), written with the change.

An event carries ids, references and numbers, never content: no prompt, and no image digest (a stream keeps its
messages for days, and erasing a character cannot reach into it). A reader that needs the prompt asks its owner.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any, Protocol

from google.protobuf import timestamp_pb2

from idlock.v1 import events_pb2
from services.orchestrator.models import Job, utcnow

log = logging.getLogger("idlock.orchestrator.events")


class EventSink(Protocol):
    async def job_event(self, verb: str, event: events_pb2.JobEvent, msg_id: str) -> None: ...


def _now_ts() -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(utcnow())
    return ts


def job_event(job: Job, status: int, **fields: Any) -> events_pb2.JobEvent:
    ev = events_pb2.JobEvent(
        job_id=job.id,
        owner_id=job.owner_id,
        character_id=job.character_id,
        status=status,
        at=_now_ts(),
    )
    for k, v in fields.items():
        if v is None:
            continue
        if k in ("result_image", "result_video", "metrics"):
            getattr(ev, k).CopyFrom(v)
        else:
            setattr(ev, k, v)
    for ref in ("result_image", "result_video"):
        if ev.HasField(ref):
            getattr(ev, ref).ClearField("sha256")
    return ev


#: jobs remembered as ended, so that a late progress event of theirs is dropped
ENDED_REMEMBERED = 10_000
#: the longest a job's events wait for its `queued` to go out first
HOLD_S = 5.0


class JobEvents:
    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        #: per job, the last event still being published in the background
        self._tails: dict[str, asyncio.Future] = {}
        #: per job started where it was accepted, what its events wait for: its `queued` on the wire
        self._gates: dict[str, asyncio.Future] = {}
        #: jobs whose ending was published by this process: no progress event of theirs follows it
        self._ended: OrderedDict[str, None] = OrderedDict()

    def hold(self, job_id: str, timeout_s: float = HOLD_S) -> None:
        """The job's events wait until its `queued` (in the outbox) is on the wire (`release`): a job started where
        it was accepted emits `started` before the relay has read its outbox. At most `timeout_s`, in case another
        replica's relay publishes it."""
        gate: asyncio.Future = asyncio.get_running_loop().create_future()
        self._tails[job_id] = self._gates[job_id] = gate
        asyncio.get_running_loop().call_later(timeout_s, self._open, job_id, gate)

    def release(self, job_id: str) -> None:
        gate = self._gates.get(job_id)
        if gate is not None:
            self._open(job_id, gate)

    def _open(self, job_id: str, gate: asyncio.Future) -> None:
        if not gate.done():
            gate.set_result(None)
        if self._gates.get(job_id) is gate:
            del self._gates[job_id]
        if self._tails.get(job_id) is gate:  # no event waited for it
            del self._tails[job_id]

    def ended(self, job_id: str) -> None:
        self._ended[job_id] = None
        while len(self._ended) > ENDED_REMEMBERED:
            self._ended.popitem(last=False)

    async def flush(self, job_id: str) -> None:
        """Wait for the job's events still on their way (before its ending is written to the outbox)."""
        pending = self._tails.pop(job_id, None)
        if pending is not None:
            await pending

    def emit_soon(self, verb: str, ev: events_pb2.JobEvent, msg_id: str) -> asyncio.Future:
        """Publish in the background, in order (the message is on the wire once the caller yields once). Nothing
        goes out for a job whose ending this process already published (a step that finished after a cancel)."""
        if ev.job_id in self._ended:
            done: asyncio.Future = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        previous = self._tails.get(ev.job_id)

        async def publish() -> None:
            if previous is not None:
                await previous
            await self._publish(verb, ev, msg_id)

        task = asyncio.ensure_future(publish())
        self._tails[ev.job_id] = task
        task.add_done_callback(
            lambda t: self._tails.pop(ev.job_id, None) if self._tails.get(ev.job_id) is t else None
        )
        return task

    async def _publish(self, verb: str, ev: events_pb2.JobEvent, msg_id: str) -> None:
        try:
            await self.sink.job_event(verb, ev, msg_id)
        except Exception as e:  # noqa: BLE001 - the row is the truth; an event lost to an outage is logged
            log.warning("job %s: publishing job.%s failed: %s", ev.job_id, verb, e)


__all__ = ["EventSink", "JobEvents", "job_event"]
