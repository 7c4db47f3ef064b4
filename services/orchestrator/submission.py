"""Job submission and the owner's side of a job: validation, the consent and readiness check, the idempotency key,
enqueueing, cancellation, watching, feedback. Plain Python over the runtime; the servicer maps protos."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator

from idlock import subjects
from idlock.errors import IdlockError, InvalidInput, NotFound, PreconditionFailed
from idlock.moderation import PromptPolicy, check_prompt
from idlock.refs import pose_copy_key
from idlock.text import sanitize_prompt, strip_control
from idlock.v1 import common_pb2, events_pb2, memory_service_pb2
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator import observe, outbox
from services.orchestrator.job_events import job_event
from services.orchestrator.models import FAILED, QUEUED, RUNNING, TERMINAL, Job
from services.orchestrator.runtime import OrchestratorRuntime
from services.orchestrator.views import msg_to_dict

log = logging.getLogger("idlock.orchestrator")

_ASPECT = re.compile(r"^\d{1,2}:\d{1,2}$")
_PROVIDER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
#: the most characters one scene holds
MAX_CAST = 4
RATINGS = {pb.FEEDBACK_RATING_UP: "up", pb.FEEDBACK_RATING_DOWN: "down"}
#: the WatchJob event of a job's status
WATCH_EVENTS = {
    QUEUED: "queued",
    "succeeded": "succeeded",
    FAILED: "failed",
    "needs_more_refs": "failed",
    "cancelled": "cancelled",
}


class IdempotencyKeyReused(InvalidInput):
    """A key already used for a different request: the client's bug, never silently the first job (422)."""

    reason = "idempotency_key_reused"


class Submissions:
    def __init__(self, rt: OrchestratorRuntime, policy: PromptPolicy | None = None) -> None:
        self.rt = rt
        #: what a prompt may ask for (`idlock.moderation`: the shipped policy plus the operator's lists)
        self.policy = policy or PromptPolicy.from_settings()

    def cast(self, request: pb.SubmitGenerationRequest) -> list[dict[str, str]]:
        """A scene's cast as stored ([] for a scene of one), or InvalidInput naming the problem."""
        if not request.cast:
            return []
        if len(request.cast) > MAX_CAST:
            raise InvalidInput(f"a scene holds at most {MAX_CAST} characters, {len(request.cast)} were given")
        ids = [c.character_id for c in request.cast]
        if not all(ids):
            raise InvalidInput("every cast member needs a character_id")
        twice = sorted({c for c in ids if ids.count(c) > 1})
        if twice:
            raise InvalidInput(f"character {twice[0]} is listed twice: list each character of the scene once")
        if request.character_id and request.character_id != ids[0]:
            raise InvalidInput("character_id must be the cast's first character (or be left empty)")
        out = []
        for c in request.cast:
            role = strip_control(c.role)
            if len(role) > 200:
                raise InvalidInput(
                    f"the role of {c.character_id} is {len(role)} characters long, the limit is 200"
                )
            out.append({"character_id": c.character_id, "role": role})
        if len(out) == 1:
            return []  # one character: an ordinary scene
        if request.options.video:
            raise InvalidInput("a video of several characters is not supported yet: make an image scene")
        if request.pose_image_uri:
            raise InvalidInput("pose_image_uri applies to a scene of one character")
        return out

    def validate(self, request: pb.SubmitGenerationRequest) -> tuple[str, list[str]]:
        """The cleaned prompt and style overrides, or InvalidInput naming the problem."""
        s = self.rt.settings
        if not request.owner_id:
            raise InvalidInput("owner_id is required")
        if not request.character_id and not request.cast:
            raise InvalidInput("character_id is required")
        prompt = sanitize_prompt(request.prompt, max_len=s.prompt_max_chars)
        if len(request.style_overrides) > s.max_style_overrides:
            raise InvalidInput(
                f"{len(request.style_overrides)} style overrides given, the limit is {s.max_style_overrides}"
            )
        overrides = []
        for i, item in enumerate(request.style_overrides):
            clean = strip_control(item)
            if len(clean) > s.prompt_max_chars:
                raise InvalidInput(
                    f"style override {i} is {len(clean)} characters long, the limit is {s.prompt_max_chars}"
                )
            if clean:
                overrides.append(clean)
        o = request.options
        if o.video_duration_s < 0 or o.video_duration_s > 60:
            raise InvalidInput(
                f"video_duration_s must be between 0 and 60 seconds, got {o.video_duration_s:g}"
            )
        if len(o.dialogue) > 1000:
            raise InvalidInput(f"dialogue is {len(o.dialogue)} characters long, the limit is 1000")
        if (o.video_duration_s or o.dialogue) and not o.video:
            raise InvalidInput("video_duration_s and dialogue apply to videos only (set options.video)")
        if o.aspect_ratio and not _ASPECT.match(o.aspect_ratio):
            raise InvalidInput(f"aspect_ratio {o.aspect_ratio!r} is not of the form W:H (e.g. 16:9)")
        for p in o.providers:
            if not _PROVIDER.match(p):
                raise InvalidInput(f"provider name {p!r} is not valid")
        if o.seed < 0:
            raise InvalidInput(f"seed must be >= 0, got {o.seed}")
        if request.pose_image_uri and not _URI.match(request.pose_image_uri):
            raise InvalidInput("pose_image_uri must be an object-storage URI (s3://... or file://...)")
        if len(request.idempotency_key) > 200:
            raise InvalidInput("idempotency_key is longer than 200 characters")
        # before anything is queued: the prompt, its style overrides and a video's spoken line, read together
        try:
            check_prompt(self.policy, prompt, *overrides, strip_control(o.dialogue))
        except IdlockError:
            observe.prompt_checked(refused=True)
            raise
        observe.prompt_checked(refused=False)
        return prompt, overrides

    def _differs(
        self, job: Job, request: pb.SubmitGenerationRequest, prompt: str, overrides: list[str]
    ) -> str:
        """What of a resubmission differs from the job its key made ("" when nothing). A pose fetched from a URL is
        copied anew for each submission, so two such copies count as the same pose."""
        fields = []
        if job.character_id != (request.character_id or request.cast[0].character_id):
            fields.append("character_id")
        if [(c["character_id"], c["role"]) for c in job.cast_members or ()] != [
            (c["character_id"], c["role"]) for c in self.cast(request)
        ]:
            fields.append("cast")
        if job.prompt != prompt:
            fields.append("prompt")
        if list(job.style_overrides or []) != overrides:
            fields.append("style_overrides")
        if (job.options or {}) != msg_to_dict(request.options):
            fields.append("options")
        store = self.rt.objects
        if job.pose_image_uri != request.pose_image_uri and not (
            pose_copy_key(store, job.pose_image_uri, job.owner_id)
            and pose_copy_key(store, request.pose_image_uri, job.owner_id)
        ):
            fields.append("pose_image_uri")
        return ", ".join(fields)

    async def check_character(self, owner_id: str, character_id: str) -> memory_service_pb2.Character:
        character = await self.rt.peers.get_character(
            character_id, owner_id, timeout_s=self.rt.settings.step_timeout_s
        )  # NOT_FOUND for an unknown character or one of another owner
        if character.owner_id and character.owner_id != owner_id:
            raise NotFound(f"character {character_id} not found")
        if not character.consent_given:
            raise PreconditionFailed(
                f"character {character_id} has no consent on record; generation needs the subject's consent",
                details={"character_id": character_id, "reason": "no_consent"},
            )
        if character.status == memory_service_pb2.CHARACTER_STATUS_NEEDS_MORE_REFS:
            reasons = list(character.status_reasons) or ["the reference images are not good enough"]
            raise PreconditionFailed(
                f"character {character_id} needs more reference images: {'; '.join(reasons)}",
                details={"character_id": character_id, "reason": "needs_more_refs", "reasons": reasons},
            )
        return character

    async def submit(self, request: pb.SubmitGenerationRequest) -> tuple[Job, bool]:
        """A new queued job (announced; started here when a slot is free, else enqueued), or the one an earlier
        submission with the same idempotency key made (created False)."""
        prompt, overrides = self.validate(request)
        cast = self.cast(request)
        character_id = request.character_id or request.cast[0].character_id
        existing = await self.rt.store.find_by_key(request.owner_id, request.idempotency_key)
        if existing is not None:
            differs = self._differs(existing, request, prompt, overrides)
            if differs:
                raise IdempotencyKeyReused(
                    f"Idempotency-Key {request.idempotency_key!r} was used for another request (its {differs} "
                    f"differ): job {existing.id} has it; send this one with a new key"
                )
            return existing, False
        if cast:  # every one of them the owner's, with consent, ready; nothing is queued otherwise
            for member in cast:
                found = await self.check_character(request.owner_id, member["character_id"])
                member["name"] = found.name
        else:
            await self.check_character(request.owner_id, character_id)
        # a free slot here: the job starts here at once, and its work waits in the outbox in case this replica dies
        local = self.rt.local
        here = local is not None and await local.take()
        hold_s = self.rt.jobs.config.lease_s if here else 0.0
        started = False
        try:
            job, created = await self.rt.store.create(
                owner_id=request.owner_id,
                character_id=character_id,
                cast=cast,
                prompt=prompt,
                pose_image_uri=request.pose_image_uri,
                style_overrides=overrides,
                options=msg_to_dict(request.options),
                idempotency_key=request.idempotency_key,
                max_active=self.rt.settings.max_active_jobs_per_owner,
                # job.queued, then the work: in the job's transaction, so neither is lost to a NATS outage or a crash
                announce=lambda job: [
                    outbox.event(
                        "queued",
                        job_event(job, common_pb2.JOB_STATUS_QUEUED, message="queued"),
                        f"{job.id}:queued",
                    ),
                    outbox.work(job, job.id, hold_s),
                ],
            )
            if created and here:
                local.start(job)
                started = True
        finally:
            if here and not started:  # refused, or an earlier submission's job: the slot goes back
                local.give_back()
        if created:
            self.rt.relay.wake()
            observe.submitted(job)
        return job, created

    async def cancel(self, job_id: str, owner_id: str) -> Job:
        def cancelled(job: Job) -> list[outbox.Outgoing]:
            ev = job_event(
                job, common_pb2.JOB_STATUS_CANCELLED, error_code="cancelled", message="cancelled by the owner"
            )
            return [outbox.event("cancelled", ev, f"{job.id}:cancelled")]

        job, changed = await self.rt.store.cancel(job_id, owner_id, announce=cancelled)
        if changed:
            self.rt.relay.wake()
            observe.ended(job, "cancelled", "cancelled")
        return job

    async def watch(self, job_id: str, owner_id: str) -> AsyncIterator[tuple[Job, str, str]]:
        """The job now and at each change of status, step or attempt, as (job, event, message), until it ends."""
        last = None
        # a change made here wakes the watch at once; one made by another replica is seen at the next look. The
        # watch starts before the first read, so every change made here after that read is among its updates
        with self.rt.store.changes.watch(job_id) as changes:
            job = await self.rt.store.get_owned(job_id, owner_id)
            while True:
                key = (job.status, job.step, job.attempts, job.waiting_for)
                if key != last:
                    last = key
                    if job.status == RUNNING and job.waiting_for:
                        event, message = "waiting", f"waiting for {job.waiting_for} ({job.step} tries again)"
                    elif job.status == RUNNING:
                        event, message = (
                            ("progress", job.step) if job.step else ("started", f"attempt {job.attempts}")
                        )
                    else:
                        event = WATCH_EVENTS.get(job.status, job.status)
                        message = job.error_message if job.status in TERMINAL else ""
                    yield job, event, message
                if job.status in TERMINAL:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changes.changed.wait(), self.rt.settings.watch_poll_s)
                # what this process wrote is applied as it was written; the row is read otherwise
                fresh = changes.take(job) or await self.rt.store.get(job.id)
                if fresh is None:  # erased meanwhile
                    return
                job = fresh

    async def feedback(self, request: pb.RecordFeedbackRequest) -> Job:
        """Record an owner's thumbs up or down on a succeeded job; feedback.recorded goes out (best effort)."""
        rating = RATINGS.get(request.rating)
        if rating is None:
            raise InvalidInput("rating is required: FEEDBACK_RATING_UP or FEEDBACK_RATING_DOWN")
        comment = strip_control(request.comment)
        if len(comment) > self.rt.settings.prompt_max_chars:
            raise InvalidInput(f"comment is longer than {self.rt.settings.prompt_max_chars} characters")
        job = await self.rt.store.record_feedback(request.job_id, request.owner_id, rating, comment)
        event = events_pb2.FeedbackRecorded(
            job_id=job.id, owner_id=job.owner_id, character_id=job.character_id, rating=request.rating
        )
        event.at.GetCurrentTime()
        digest = hashlib.sha256(f"{rating}|{comment}".encode()).hexdigest()[:12]
        try:
            await self.rt.bus.publish(
                subjects.FEEDBACK_RECORDED, event, msg_id=f"{job.id}:feedback:{job.owner_id}:{digest}"
            )
        except Exception as e:  # noqa: BLE001 - the row is stored; the event is best effort
            log.warning("feedback.recorded for %s not published: %s", job.id, e)
        return job


__all__ = ["RATINGS", "Submissions"]
