"""A job's watchers take what this process wrote (the row a statement returned, the columns it set) in the order it
was written, and read the row when a change did not say what it wrote or nothing was signalled."""

from __future__ import annotations

from datetime import UTC, datetime

from services.orchestrator.feedback import JobChanges
from services.orchestrator.models import Job


def _job(**values) -> Job:
    row = {"id": "job_1", "owner_id": "u", "character_id": "c", "prompt": "p", "status": "queued", "step": ""}
    return Job(**(row | values))


def test_updates_apply_in_the_order_written() -> None:
    changes = JobChanges()
    queued = _job()
    with changes.watch("job_1") as watch:
        assert watch.take(queued) is None  # nothing signalled: the row is read
        changes.changed("job_1", _job(status="running", attempts=1, step=""))  # the claim's returned row
        changes.changed("job_1", {"step": "render", "checkpoint": {"context": {"prompt": "q"}}})
        changes.changed("job_2", {"step": "record"})  # another job's change is not this watch's
        assert watch.changed.is_set()
        now = watch.take(queued)
        assert not watch.changed.is_set()
        assert (now.status, now.attempts, now.step, now.checkpoint) == (
            "running",
            1,
            "render",
            {"context": {"prompt": "q"}},
        )
        assert (queued.status, queued.step) == ("queued", "")  # what the watch held is not changed
        later = datetime(2026, 12, 5, tzinfo=UTC)
        changes.changed("job_1", {"waiting_for": "render", "waiting_since": later})
        assert watch.take(now).waiting_for == "render"


def test_a_change_that_does_not_say_what_it_wrote_is_read() -> None:
    changes = JobChanges()
    with changes.watch("job_1") as watch:
        changes.changed("job_1", {"step": "render"})
        changes.changed("job_1")  # e.g. a cancel
        changes.changed("job_1", {"step": "record"})
        assert watch.take(_job()) is None
        assert watch.take(_job()) is None  # taken: nothing pending
    assert changes._watchers == {}
