"""NATS JetStream stream, subject and durable consumer names: the one place they are spelled.

JOBS is a work queue (each job delivered to one worker, removed once acked), EVENTS keeps a time-bounded
history that many services read, DEADLETTER keeps jobs that exhausted their retries for an operator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from idlock.errors import InvalidInput

PREFIX = "idlock"

# --- streams -----------------------------------------------------------------------------------------------

JOBS_STREAM = "JOBS"
EVENTS_STREAM = "EVENTS"
DEADLETTER_STREAM = "DEADLETTER"

JOBS_SUBJECTS = f"{PREFIX}.jobs.>"
EVENTS_SUBJECTS = f"{PREFIX}.events.>"
DEADLETTER_SUBJECTS = f"{PREFIX}.deadletter.>"


@dataclass(frozen=True)
class StreamSpec:
    """What IDLock owns about a stream; `bus.ensure_streams` creates or verifies it."""

    name: str
    subjects: tuple[str, ...]
    retention: Literal["workqueue", "limits"]
    #: None: keep until acked (work queue) or forever
    max_age_s: float | None = None


JOBS = StreamSpec(JOBS_STREAM, (JOBS_SUBJECTS,), "workqueue")
EVENTS = StreamSpec(EVENTS_STREAM, (EVENTS_SUBJECTS,), "limits")  # max_age comes from NatsSettings
DEADLETTER = StreamSpec(DEADLETTER_STREAM, (DEADLETTER_SUBJECTS,), "limits")

# --- job subjects ------------------------------------------------------------------------------------------

JOB_GENERATE = f"{PREFIX}.jobs.generate"
JOB_TRAIN = f"{PREFIX}.jobs.train"

# --- event subjects ----------------------------------------------------------------------------------------

_TOKEN = re.compile(r"^[a-z][a-z0-9_]*$")


def event_subject(entity: str, verb: str) -> str:
    """`idlock.events.<entity>.<verb>`; both parts are lowercase subject tokens (no dots or wildcards)."""
    for part_name, part in (("entity", entity), ("verb", verb)):
        if not _TOKEN.match(part):
            raise InvalidInput(
                f"event {part_name} {part!r} is not a valid subject token (lowercase letters, digits, '_')"
            )
    return f"{PREFIX}.events.{entity}.{verb}"


CHARACTER_CREATED = event_subject("character", "created")
CHARACTER_DELETED = event_subject("character", "deleted")
JOB_QUEUED = event_subject("job", "queued")
JOB_STARTED = event_subject("job", "started")
JOB_SUCCEEDED = event_subject("job", "succeeded")
JOB_FAILED = event_subject("job", "failed")
JOB_CANCELLED = event_subject("job", "cancelled")
JOB_PROGRESS = event_subject("job", "progress")
EPISODE_RECORDED = event_subject("episode", "recorded")
MEMORY_CONSOLIDATED = event_subject("memory", "consolidated")
GOLDEN_COLLECTED = event_subject("golden", "collected")
LORA_TRAINED = event_subject("lora", "trained")
LORA_ACTIVATED = event_subject("lora", "activated")
LORA_ARCHIVED = event_subject("lora", "archived")
LEARNING_DECIDED = event_subject("learning", "decided")
FEEDBACK_RECORDED = event_subject("feedback", "recorded")
REPORT_FILED = event_subject("report", "filed")
REPORT_RESOLVED = event_subject("report", "resolved")

ALL_EVENTS = (
    CHARACTER_CREATED,
    CHARACTER_DELETED,
    JOB_QUEUED,
    JOB_STARTED,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_CANCELLED,
    JOB_PROGRESS,
    EPISODE_RECORDED,
    MEMORY_CONSOLIDATED,
    GOLDEN_COLLECTED,
    LORA_TRAINED,
    LORA_ACTIVATED,
    LORA_ARCHIVED,
    LEARNING_DECIDED,
    FEEDBACK_RECORDED,
    REPORT_FILED,
    REPORT_RESOLVED,
)


# --- dead letters ------------------------------------------------------------------------------------------


def deadletter_subject(original_subject: str) -> str:
    """`idlock.jobs.generate` → `idlock.deadletter.jobs.generate`."""
    rest = (
        original_subject[len(PREFIX) + 1 :] if original_subject.startswith(PREFIX + ".") else original_subject
    )
    return f"{PREFIX}.deadletter.{rest}"


# --- durable consumers -------------------------------------------------------------------------------------
# A work-queue stream allows one consumer per subject, so each job subject has exactly one durable.

ORCHESTRATOR_GENERATE = "orchestrator-generate"
TRAINER_TRAIN = "trainer-train"
# EVENTS consumers (limits retention: each service reads every event it filters on)
TRAINER_GOLDEN = "trainer-golden"
MEMORY_CHARACTER_DELETED = "memory-character-deleted"
ORCHESTRATOR_JOB_EVENTS = "orchestrator-job-events"
ORCHESTRATOR_CHARACTER_DELETED = "orchestrator-character-deleted"
