"""A job started where it was accepted holds its events until its `queued` (published by the outbox relay) is out."""

from __future__ import annotations

import asyncio

from idlock.v1 import events_pb2
from services.orchestrator.job_events import JobEvents


class Sink:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def job_event(self, verb: str, event: events_pb2.JobEvent, msg_id: str) -> None:
        self.sent.append(verb)


async def test_held_events_wait_for_the_release_and_keep_their_order() -> None:
    sink = Sink()
    events = JobEvents(sink)
    events.hold("job_1")
    events.emit_soon("started", events_pb2.JobEvent(job_id="job_1"), "job_1:started")
    events.emit_soon("progress", events_pb2.JobEvent(job_id="job_1"), "job_1:p1")
    events.emit_soon("started", events_pb2.JobEvent(job_id="job_2"), "job_2:started")  # not held
    await asyncio.sleep(0.05)
    assert sink.sent == ["started"]  # job_2's only
    sink.sent.append("queued")  # the relay puts job_1's queued on the wire, then releases it
    events.release("job_1")
    await events.flush("job_1")
    assert sink.sent == ["started", "queued", "started", "progress"]


async def test_a_hold_never_released_opens_after_its_timeout() -> None:
    sink = Sink()
    events = JobEvents(sink)
    events.hold("job_1", timeout_s=0.1)  # another replica's relay published the queued event
    done = events.emit_soon("started", events_pb2.JobEvent(job_id="job_1"), "job_1:started")
    await asyncio.wait_for(done, 2.0)
    assert sink.sent == ["started"]
    events.hold("job_2", timeout_s=0.05)  # nothing emitted: the hold leaves nothing behind
    await asyncio.sleep(0.1)
    await asyncio.wait_for(events.flush("job_2"), 1.0)
