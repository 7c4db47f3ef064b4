"""gRPC surface of the orchestrator: job submission and status (thin), plus the worker that consumes
`idlock.jobs.generate` and the reconciler that re-enqueues stuck jobs. A job is run by `worker.py` through its
flow (`image_flow.py`, `video_flow.py`); the job state machine is `jobs.py`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import socket
import uuid

from idlock import subjects
from idlock.bus import Delivery, EventBus, Worker
from idlock.db import Database
from idlock.errors import InvalidInput, NotFound, PreconditionFailed, Unavailable
from idlock.grpc_server import ServiceSpec
from idlock.settings import DatabaseSettings, MeshSettings, NatsSettings, PathsSettings, StorageSettings
from idlock.storage import ObjectStore, open_store
from idlock.text import sanitize_prompt, strip_control
from idlock.v1 import (
    common_pb2,
    events_pb2,
    memory_service_pb2,
)
from idlock.v1 import (
    orchestrator_service_pb2 as pb,
)
from idlock.v1 import (
    orchestrator_service_pb2_grpc as pb_grpc,
)
from services.orchestrator.clients import GrpcPeers
from services.orchestrator.flow import FlowConfig, Peers
from services.orchestrator.job_events import job_event
from services.orchestrator.jobs import JobStore
from services.orchestrator.models import FAILED, QUEUED, RUNNING, SCHEMA_VERSION, TERMINAL, Base, Job
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.state_extraction import StateExtractor, VisionStateReader
from services.orchestrator.views import msg_to_dict, to_proto
from services.orchestrator.worker import JobWorker

SETTINGS = OrchestratorSettings
log = logging.getLogger("idlock.orchestrator")

_ASPECT = re.compile(r"^\d{1,2}:\d{1,2}$")
_PROVIDER = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
RATINGS = {pb.FEEDBACK_RATING_UP: "up", pb.FEEDBACK_RATING_DOWN: "down"}
WATCH_EVENTS = {
    QUEUED: "queued",
    "succeeded": "succeeded",
    FAILED: "failed",
    "needs_more_refs": "failed",
    "cancelled": "cancelled",
}


class BusEvents:
    """Job events on `idlock.events.job.<verb>`, de-duplicated by message id."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    async def job_event(self, verb: str, event: events_pb2.JobEvent, msg_id: str) -> None:
        await self.bus.publish(subjects.event_subject("job", verb), event, msg_id=msg_id)


class OrchestratorServicer(pb_grpc.OrchestratorServiceServicer):
    def __init__(self, settings: OrchestratorSettings, *, peers: Peers | None = None) -> None:
        self.settings = settings
        self.worker_id = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
        self._peers_override = peers
        self.peers: Peers | None = peers
        self.db: Database | None = None
        self.store: JobStore | None = None
        self.bus: EventBus | None = None
        self.objects: ObjectStore | None = None
        self.jobs: JobWorker | None = None
        self.worker: Worker | None = None
        self.extractor: StateExtractor | None = None
        self._reconciler: asyncio.Task | None = None

    # --- lifecycle --------------------------------------------------------------------------------------------

    async def startup(self) -> None:
        s = self.settings
        data_dir = PathsSettings().data_dir
        self.db = Database.open(DatabaseSettings(), service="orchestrator", data_dir=data_dir)
        await self.db.migrate(Base.metadata, version=SCHEMA_VERSION)
        self.store = JobStore(self.db)
        self.bus = await EventBus.connect(NatsSettings(), name=f"orchestrator-{self.worker_id}")
        await self.bus.ensure_streams()
        self.objects = await open_store(StorageSettings(), data_dir)
        if self.peers is None:
            self.peers = GrpcPeers(MeshSettings())
        key = s.gemini_api_key.get_secret_value()
        reader = (
            VisionStateReader(key, s.gemini_model, base_url=s.gemini_base_url, timeout_s=s.step_timeout_s)
            if key
            else None
        )
        self.extractor = StateExtractor(reader, timeout_s=s.step_timeout_s)
        self.jobs = JobWorker(
            self.store,
            self.peers,
            BusEvents(self.bus),
            self.extractor,
            FlowConfig.from_settings(s),
            worker_id=self.worker_id,
            objects=self.objects,
        )
        if s.worker_enabled:
            await self.start_worker()
            self._reconciler = asyncio.create_task(self._reconcile_loop(), name="orchestrator-reconciler")

    async def shutdown(self) -> None:
        if self._reconciler is not None:
            self._reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconciler
        await self.stop_worker()
        if self.bus is not None:
            await self.bus.close()
        if self.extractor is not None:
            await self.extractor.aclose()
        if self.peers is not None and self._peers_override is None:
            await self.peers.close()  # type: ignore[attr-defined]
        if self.objects is not None:
            await self.objects.close()
        if self.db is not None:
            await self.db.close()

    async def start_worker(self) -> Worker:
        if self.worker is None:
            s = self.settings
            self.worker = await self.bus.consume(
                subjects.JOBS_STREAM,
                subjects.JOB_GENERATE,
                subjects.ORCHESTRATOR_GENERATE,
                self._handle,
                ack_wait_s=s.ack_wait_s,
                max_deliver=s.max_deliver,
                backoff_s=s.backoff_s,
                concurrency=s.concurrency,
            )
        return self.worker

    async def stop_worker(self, grace_s: float | None = None) -> None:
        if self.worker is not None:
            worker, self.worker = self.worker, None
            await worker.stop(self.settings.generation_timeout_s if grace_s is None else grace_s)

    async def _handle(self, delivery: Delivery) -> None:
        work = delivery.message
        if not isinstance(work, events_pb2.GenerateJobWork) or not work.job_id:
            log.warning("ignoring a %s on %s: not a GenerateJobWork", type(work).__name__, delivery.subject)
            return
        final = delivery.num_delivered >= self.settings.max_deliver
        async with delivery.heartbeat():
            # a redelivery is most likely a resumed job, whose context is saved: no early context for it
            first = delivery.num_delivered == 1
            await self.jobs.run(work.job_id, final_attempt=final, work=work if first else None)

    # --- the reconciler ---------------------------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reconcile_interval_s)
            try:
                await self.reconcile_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciler round failed")

    async def reconcile_once(self) -> list[str]:
        """Re-enqueue jobs stuck in queued/running (a lost message, a dead worker); give up after max_requeues.
        Returns the ids re-enqueued."""
        out: list[str] = []
        for job in await self.store.stuck(self.settings.stuck_after_s):
            if job.requeues >= self.settings.max_requeues:
                msg = f"stuck in {job.status} after {job.requeues} re-enqueues; gave up"
                if await self.store.finish(job.id, FAILED, error_code="stuck", error_message=msg):
                    await self.jobs.events.emit(
                        "failed",
                        job_event(job, common_pb2.JOB_STATUS_FAILED, error_code="stuck", message=msg),
                        f"{job.id}:failed",
                    )
                continue
            n = await self.store.bump_requeue(job.id, job.updated_at)
            if n is None:
                continue
            await self._publish_work(job, msg_id=f"{job.id}:r{n}")
            log.info("re-enqueued job %s (stuck in %s), requeue %d", job.id, job.status, n)
            out.append(job.id)
        return out

    async def _publish_work(self, job: Job, *, msg_id: str) -> None:
        work = events_pb2.GenerateJobWork(
            job_id=job.id,
            owner_id=job.owner_id,
            character_id=job.character_id,
            video=bool((job.options or {}).get("video")),
        )
        if job.status == QUEUED:  # a job that ran before may have its context saved: the worker reads the row
            work.prompt = job.prompt
            work.style_overrides.extend(job.style_overrides or [])
        await self.bus.publish(subjects.JOB_GENERATE, work, msg_id=msg_id)

    # --- RPCs -------------------------------------------------------------------------------------------------

    def _validate(self, request: pb.SubmitGenerationRequest) -> tuple[str, list[str]]:
        s = self.settings
        if not request.owner_id:
            raise InvalidInput("owner_id is required")
        if not request.character_id:
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
        return prompt, overrides

    async def _check_character(self, owner_id: str, character_id: str) -> memory_service_pb2.Character:
        character = await self.peers.get_character(
            character_id, owner_id, timeout_s=self.settings.step_timeout_s
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

    async def SubmitGeneration(
        self, request: pb.SubmitGenerationRequest, context
    ) -> pb.SubmitGenerationResponse:
        prompt, overrides = self._validate(request)
        existing = await self.store.find_by_key(request.owner_id, request.idempotency_key)
        if existing is not None:
            if existing.status == QUEUED and existing.attempts == 0:
                # the first submission may have failed to enqueue: the same msg id is de-duplicated if it did not
                with contextlib.suppress(Exception):
                    await self._publish_work(existing, msg_id=existing.id)
            return pb.SubmitGenerationResponse(job=to_proto(existing), created=False)
        await self._check_character(request.owner_id, request.character_id)
        job, created = await self.store.create(
            owner_id=request.owner_id,
            character_id=request.character_id,
            prompt=prompt,
            pose_image_uri=request.pose_image_uri,
            style_overrides=overrides,
            options=msg_to_dict(request.options),
            idempotency_key=request.idempotency_key,
            max_active=self.settings.max_active_jobs_per_owner,
        )
        if created:
            # the event first: a fast worker's job.started must never precede job.queued
            await self.jobs.events.emit(
                "queued",
                job_event(job, common_pb2.JOB_STATUS_QUEUED, message="queued"),
                f"{job.id}:queued",
            )
            try:
                await self._publish_work(job, msg_id=job.id)
            except Exception as e:
                raise Unavailable(
                    f"job {job.id} was created but could not be enqueued ({e}); retry with the same "
                    "idempotency_key, or the reconciler enqueues it later",
                    details={"job_id": job.id},
                ) from e
        return pb.SubmitGenerationResponse(job=to_proto(job), created=created)

    async def GetJob(self, request: pb.GetJobRequest, context) -> pb.GetJobResponse:
        return pb.GetJobResponse(job=to_proto(await self.store.get_owned(request.job_id, request.owner_id)))

    async def CancelJob(self, request: pb.CancelJobRequest, context) -> pb.CancelJobResponse:
        job, changed = await self.store.cancel(request.job_id, request.owner_id)
        if changed:
            await self.jobs.events.emit(
                "cancelled",
                job_event(
                    job,
                    common_pb2.JOB_STATUS_CANCELLED,
                    error_code="cancelled",
                    message="cancelled by the owner",
                ),
                f"{job.id}:cancelled",
            )
        return pb.CancelJobResponse(job=to_proto(job))

    async def ListJobs(self, request: pb.ListJobsRequest, context) -> pb.ListJobsResponse:
        jobs, token = await self.store.list(
            request.owner_id,
            character_id=request.character_id,
            page_size=request.page.page_size,
            page_token=request.page.page_token,
        )
        return pb.ListJobsResponse(jobs=[to_proto(j) for j in jobs], next_page_token=token)

    async def WatchJob(self, request: pb.WatchJobRequest, context):
        job = await self.store.get_owned(request.job_id, request.owner_id)
        last = None
        # a change made here wakes the watch at once; one made by another replica is seen at the next look
        with self.store.changes.watch(job.id) as changed:
            while True:
                key = (job.status, job.step, job.attempts)
                if key != last:
                    last = key
                    if job.status == RUNNING:
                        event, message = (
                            ("progress", job.step) if job.step else ("started", f"attempt {job.attempts}")
                        )
                    else:
                        event = WATCH_EVENTS.get(job.status, job.status)
                        message = job.error_message if job.status in TERMINAL else ""
                    yield pb.WatchJobResponse(job=to_proto(job), event=event, message=message)
                if job.status in TERMINAL:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), self.settings.watch_poll_s)
                changed.clear()
                fresh = await self.store.get(job.id)
                if fresh is None:  # erased meanwhile
                    return
                job = fresh

    async def RecordFeedback(self, request: pb.RecordFeedbackRequest, context) -> pb.RecordFeedbackResponse:
        rating = RATINGS.get(request.rating)
        if rating is None:
            raise InvalidInput("rating is required: FEEDBACK_RATING_UP or FEEDBACK_RATING_DOWN")
        comment = strip_control(request.comment)
        if len(comment) > self.settings.prompt_max_chars:
            raise InvalidInput(f"comment is longer than {self.settings.prompt_max_chars} characters")
        job = await self.store.record_feedback(request.job_id, request.owner_id, rating, comment)
        event = events_pb2.FeedbackRecorded(
            job_id=job.id, owner_id=job.owner_id, character_id=job.character_id, rating=request.rating
        )
        event.at.GetCurrentTime()
        digest = hashlib.sha256(f"{rating}|{comment}".encode()).hexdigest()[:12]
        try:
            await self.bus.publish(
                subjects.FEEDBACK_RECORDED, event, msg_id=f"{job.id}:feedback:{job.owner_id}:{digest}"
            )
        except Exception as e:  # noqa: BLE001 - the row is stored; the event is best effort
            log.warning("feedback.recorded for %s not published: %s", job.id, e)
        return pb.RecordFeedbackResponse(recorded=True)


def spec_for(servicer: OrchestratorServicer) -> ServiceSpec:
    return ServiceSpec(
        component="orchestrator",
        service_names=[pb.DESCRIPTOR.services_by_name["OrchestratorService"].full_name],
        registrations=[lambda server: pb_grpc.add_OrchestratorServiceServicer_to_server(servicer, server)],
        on_startup=[servicer.startup],
        on_shutdown=[servicer.shutdown],
    )


def build(settings: OrchestratorSettings) -> ServiceSpec:
    return spec_for(OrchestratorServicer(settings))
