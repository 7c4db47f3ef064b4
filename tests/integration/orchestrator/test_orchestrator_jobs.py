"""The job store and state machine on SQLite and (when IDLOCK_TEST_POSTGRES_URL is set) Postgres."""

from __future__ import annotations

import asyncio

import pytest

from idlock.db import Database
from idlock.errors import NotFound, PreconditionFailed, QuotaExceeded
from idlock.settings import DatabaseSettings
from services.orchestrator import outbox
from services.orchestrator.jobs import JobStore
from services.orchestrator.models import SCHEMA_VERSION, Base, utcnow
from services.orchestrator.outbox import Relay


@pytest.fixture
async def store(db_url, db_schema, data_dir):
    db = Database.open(
        DatabaseSettings(url=db_url), service="orchestrator", data_dir=data_dir, schema=db_schema
    )
    await db.migrate(Base.metadata, version=SCHEMA_VERSION)
    try:
        yield JobStore(db)
    finally:
        await db.close()


async def test_submission_idempotency_quota_and_listing(store: JobStore) -> None:
    a, created = await store.create(
        owner_id="o1", character_id="c1", prompt="p", idempotency_key="k", max_active=2
    )
    again, created2 = await store.create(
        owner_id="o1", character_id="c1", prompt="other", idempotency_key="k"
    )
    assert created and not created2 and again.id == a.id and again.prompt == "p"
    other_owner, created3 = await store.create(
        owner_id="o2", character_id="c9", prompt="p", idempotency_key="k"
    )
    assert created3 and other_owner.id != a.id
    b, _ = await store.create(owner_id="o1", character_id="c2", prompt="p", max_active=2)
    with pytest.raises(QuotaExceeded):
        await store.create(owner_id="o1", character_id="c1", prompt="p", max_active=2)

    page, token = await store.list("o1", page_size=1)
    rest, end = await store.list("o1", page_size=1, page_token=token)
    assert [j.id for j in page] == [b.id] and [j.id for j in rest] == [a.id] and end == ""
    assert [j.id for j in (await store.list("o1", character_id="c2"))[0]] == [b.id]
    with pytest.raises(NotFound):
        await store.get_owned(a.id, "o2")


async def test_claim_lease_checkpoint_cancel_and_finish(store: JobStore) -> None:
    job, _ = await store.create(owner_id="o", character_id="c", prompt="p")
    first = await store.claim(job.id, "w1", lease_s=0.5)
    assert first.outcome == "claimed" and first.job.attempts == 1
    busy = await store.claim(job.id, "w2", lease_s=0.5)
    assert busy.outcome == "busy" and busy.lease_until is not None
    assert await store.save_steps(
        job.id, "w1", {"render": {"image": {"uri": "file:///x.png"}}}, step="render"
    )
    assert not await store.save_steps(job.id, "w2", {"render": {}}, step="render")  # not its lease
    await asyncio.sleep(0.6)  # w1 died: its lease runs out
    taken = await store.claim(job.id, "w2", lease_s=5)
    assert taken.outcome == "claimed" and taken.job.attempts == 2
    assert taken.job.checkpoint == {"render": {"image": {"uri": "file:///x.png"}}}
    steps = {**taken.job.checkpoint, "context": {"prompt": "p"}, "score": {"idr": 0.9}}
    assert await store.save_steps(job.id, "w2", steps, step="refine")
    row = await store.get(job.id)
    assert row.step == "refine" and set(row.checkpoint) == {"render", "context", "score"}
    assert not await store.save_steps(job.id, "w1", {"score": {"idr": 0.9}}, step="refine")

    cancelled, changed = await store.cancel(job.id, "o")
    assert changed and cancelled.status == "cancelled"
    assert not await store.save_steps(job.id, "w2", {}, step="score")
    assert not await store.finish(job.id, "succeeded", worker_id="w2")  # a cancel is never overwritten
    assert (await store.claim(job.id, "w3", lease_s=5)).outcome == "terminal"
    assert (await store.claim("job_missing", "w3", lease_s=5)).outcome == "missing"

    done, _ = await store.create(owner_id="o", character_id="c", prompt="p")
    await store.claim(done.id, "w1", lease_s=5)
    usage = {
        "owner_id": "o",
        "character_id": "c",
        "provider": "compositor",
        "model": "m",
        "estimated_cost_usd": 0.01,
        "total_seconds": 1.0,
    }
    assert await store.finish(done.id, "succeeded", worker_id="w1", metrics={"scene_index": 1}, usage=usage)
    assert not await store.finish(done.id, "failed")
    assert (await store.usage(done.id)).provider == "compositor"
    with pytest.raises(PreconditionFailed, match="job already succeeded"):
        await store.cancel(done.id, "o")
    await store.record_feedback(done.id, "o", "down", "")
    await store.record_feedback(done.id, "o", "up", "better")
    assert [(f.rating, f.comment) for f in await store.feedback(done.id)] == [("up", "better")]


async def test_stuck_jobs_are_found_and_counted(store: JobStore) -> None:
    job, _ = await store.create(owner_id="o", character_id="c", prompt="p")
    assert await store.stuck(60) == []
    await asyncio.sleep(0.3)
    stuck = await store.stuck(0.2)
    assert [j.id for j in stuck] == [job.id]
    assert await store.requeue(stuck[0]) == 1
    assert await store.requeue(stuck[0]) is None  # moved on since it was read
    assert await store.stuck(0.2) == []
    # the re-enqueue's work is in the outbox, written with the count
    pending = await Relay(store.db, publish=None).pending(job.id)
    assert [(m.kind, m.msg_id) for m in pending] == [("work", f"{job.id}:r1")]


async def test_changes_and_their_messages_are_one_transaction(store: JobStore) -> None:
    def queued(job):
        return [outbox.work(job, job.id)]

    # a create that fails (the quota) leaves neither a job nor its message
    await store.create(owner_id="o", character_id="c", prompt="p", max_active=1, announce=queued)
    with pytest.raises(QuotaExceeded):
        await store.create(owner_id="o", character_id="c", prompt="q", max_active=1, announce=queued)
    relay = Relay(store.db, publish=None)
    assert len(await relay.pending()) == 1

    published: list[tuple[str, str]] = []
    fail = {"n": 2}

    async def publish(subject, message, msg_id, headers) -> None:
        if fail["n"]:
            fail["n"] -= 1
            raise ConnectionError("nats: no servers available")
        published.append((subject, msg_id))

    relay = Relay(store.db, publish, max_backoff_s=0.05)
    job, _ = await store.create(owner_id="o2", character_id="c", prompt="p", announce=queued)
    # a poll leaves messages never tried to the process that wrote them (it publishes them at once)
    assert await relay.once(local=False) == 0 and fail["n"] == 2
    assert await relay.once() == 0  # NATS away: nothing is deleted, the first message backs off
    assert [m.attempts for m in await relay.pending()] == [1, 0]
    await asyncio.sleep(0.3)
    assert await relay.once(local=False) == 1  # tried before: any process's relay takes it up
    assert await relay.once() == 1
    assert [m for _, m in published] == [published[0][1], job.id] and await relay.pending() == []


async def test_a_cancel_after_the_effect_boundary_comes_too_late(store: JobStore) -> None:
    job, _ = await store.create(owner_id="o", character_id="c", prompt="p")
    await store.claim(job.id, "w1", lease_s=30)
    assert await store.set_waiting(job.id, "w1", "render", utcnow())
    assert (await store.get(job.id)).waiting_for == "render"
    assert await store.save_steps(job.id, "w1", {"state": {}}, step="record", commit=True)
    with pytest.raises(PreconditionFailed, match="too late to cancel") as err:
        await store.cancel(job.id, "o")
    assert err.value.reason == "cancel_too_late"
    ended = await store.finish(job.id, "succeeded", worker_id="w1")
    assert ended.status == "succeeded" and ended.error_code == "cancel_too_late" and ended.waiting_for == ""

    # before the boundary, a cancel wins, and the worker's next write finds it
    other, _ = await store.create(owner_id="o", character_id="c", prompt="p")
    await store.claim(other.id, "w1", lease_s=30)
    _, changed = await store.cancel(other.id, "o")
    assert changed
    assert not await store.save_steps(other.id, "w1", {}, step="record", commit=True)
    assert (await store.get(other.id)).committed_at is None


async def test_a_held_work_message_comes_due_with_the_lease_and_goes_with_the_end(store: JobStore) -> None:
    """A job started where it was accepted (`local_start.py`): its work message waits in the outbox."""
    published: list[str] = []

    async def publish(subject, message, msg_id, headers) -> None:
        published.append(msg_id)

    relay = Relay(store.db, publish)
    job, _ = await store.create(
        owner_id="o", character_id="c", prompt="p", announce=lambda j: [outbox.work(j, j.id, hold_s=60)]
    )
    assert await relay.once() == 0 and published == []  # held: not due
    assert (await store.claim(job.id, "w1", lease_s=60)).outcome == "claimed"
    (held,) = await relay.pending(job.id)
    # a renewal that holds the work moves it to the lease's new end; one that does not leaves it
    assert await store.renew(job.id, "w1", lease_s=600, hold_work=True)
    (renewed,) = await relay.pending(job.id)
    assert renewed.next_at > held.next_at
    assert not await store.renew(job.id, "w2", lease_s=6000, hold_work=True)  # not w2's: nothing moves
    assert (await relay.pending(job.id))[0].next_at == renewed.next_at
    # handed to the queue: due now, and published
    assert await store.release_work(job.id) and await relay.once() == 1 and published == [job.id]
    assert not await store.release_work(job.id)  # nothing left to hand over

    # an ended job has no work left to deliver: its end deletes the held message in its transaction
    other, _ = await store.create(
        owner_id="o", character_id="c", prompt="q", announce=lambda j: [outbox.work(j, j.id, hold_s=60)]
    )
    await store.claim(other.id, "w1", lease_s=60)
    assert len(await relay.pending(other.id)) == 1
    assert await store.finish(other.id, "succeeded", worker_id="w1") is not None
    assert await relay.pending(other.id) == []
    # and a cancelled one's is dropped
    third, _ = await store.create(
        owner_id="o", character_id="c", prompt="r", announce=lambda j: [outbox.work(j, j.id, hold_s=60)]
    )
    await store.drop_work(third.id)
    assert await relay.pending(third.id) == [] and published == [job.id]
