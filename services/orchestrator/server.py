"""gRPC surface of the orchestrator: each RPC maps its request to one use case and the result to proto, nothing
more; the consumer of `idlock.jobs.generate` (`handlers.py`) and the reconciler's loop start with the service.

Where things live: `runtime.py` (what the process opens and closes), `submission.py` (submit, cancel, watch,
feedback), `worker.py` (running a job through its flow: `image_flow.py`, `video_flow.py`, over `runner.py`),
`reconciler.py`, `jobs.py` (the job state machine), `views.py` (rows -> protos).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from idlock.bus import EventBus, Worker
from idlock.grpc_server import ServiceSpec
from idlock.moderation import ModerationSettings
from idlock.v1 import orchestrator_service_pb2 as pb
from idlock.v1 import orchestrator_service_pb2_grpc as pb_grpc
from services.orchestrator.flow import Peers
from services.orchestrator.handlers import GenerateConsumer
from services.orchestrator.jobs import JobStore
from services.orchestrator.reconciler import Reconciler
from services.orchestrator.runtime import OrchestratorRuntime
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.submission import Submissions
from services.orchestrator.views import JobProtos, to_proto
from services.orchestrator.worker import JobWorker

SETTINGS = OrchestratorSettings
#: the kernel's settings it reads besides its own (checked at start-up with them)
ALSO_READS = (ModerationSettings,)
log = logging.getLogger("idlock.orchestrator")


class OrchestratorServicer(pb_grpc.OrchestratorServiceServicer):
    def __init__(self, settings: OrchestratorSettings, *, peers: Peers | None = None) -> None:
        self.settings = settings
        self.rt = OrchestratorRuntime(settings, peers=peers)
        self.submissions = Submissions(self.rt)
        self.reconciler = Reconciler(self.rt)
        self.consumer = GenerateConsumer(self.rt)
        self._reconciling: asyncio.Task | None = None
        self._sampling: asyncio.Task | None = None
        self._relaying: asyncio.Task | None = None

    # the runtime's parts, as tests and tools reach them
    @property
    def worker_id(self) -> str:
        return self.rt.worker_id

    @property
    def store(self) -> JobStore:
        return self.rt.store

    @property
    def bus(self) -> EventBus:
        return self.rt.bus

    @property
    def peers(self) -> Peers:
        return self.rt.peers

    @property
    def jobs(self) -> JobWorker:
        return self.rt.jobs

    # --- lifecycle --------------------------------------------------------------------------------------------

    async def startup(self) -> None:
        await self.rt.open()
        # every replica relays the outbox (an API-only one too: its submissions are in it)
        self._relaying = asyncio.create_task(self.rt.relay.loop(), name="orchestrator-outbox-relay")
        if self.settings.worker_enabled:
            await self.start_worker()
            self._reconciling = asyncio.create_task(self.reconciler.loop(), name="orchestrator-reconciler")
            self._sampling = asyncio.create_task(
                self.reconciler.watch_queue(), name="orchestrator-queue-metrics"
            )

    async def shutdown(self) -> None:
        for task in (self._reconciling, self._sampling):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.stop_worker()
        if self._relaying is not None:  # after the worker: the endings it wrote go out first
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.rt.relay.once(), 2.0)
            self._relaying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relaying
        await self.rt.close()

    # --- the job queue's consumer (handlers.py) -----------------------------------------------------------------

    async def start_worker(self) -> Worker:
        return await self.consumer.start()

    async def stop_worker(self, grace_s: float | None = None) -> None:
        await self.consumer.stop(grace_s)

    async def reconcile_once(self) -> list[str]:
        return await self.reconciler.once()

    # --- RPCs -------------------------------------------------------------------------------------------------

    async def SubmitGeneration(
        self, request: pb.SubmitGenerationRequest, context
    ) -> pb.SubmitGenerationResponse:
        job, created = await self.submissions.submit(request)
        return pb.SubmitGenerationResponse(job=to_proto(job), created=created)

    async def GetJob(self, request: pb.GetJobRequest, context) -> pb.GetJobResponse:
        return pb.GetJobResponse(
            job=to_proto(await self.rt.store.get_owned(request.job_id, request.owner_id))
        )

    async def CancelJob(self, request: pb.CancelJobRequest, context) -> pb.CancelJobResponse:
        return pb.CancelJobResponse(
            job=to_proto(await self.submissions.cancel(request.job_id, request.owner_id))
        )

    async def ListJobs(self, request: pb.ListJobsRequest, context) -> pb.ListJobsResponse:
        jobs, token = await self.rt.store.list(
            request.owner_id,
            character_id=request.character_id,
            page_size=request.page.page_size,
            page_token=request.page.page_token,
        )
        return pb.ListJobsResponse(jobs=[to_proto(j) for j in jobs], next_page_token=token)

    async def WatchJob(self, request: pb.WatchJobRequest, context):
        protos = JobProtos()
        async for job, event, message in self.submissions.watch(request.job_id, request.owner_id):
            yield pb.WatchJobResponse(job=protos.to_proto(job), event=event, message=message)

    async def RecordFeedback(self, request: pb.RecordFeedbackRequest, context) -> pb.RecordFeedbackResponse:
        await self.submissions.feedback(request)
        return pb.RecordFeedbackResponse(recorded=True)

    async def ListUsage(self, request: pb.ListUsageRequest, context) -> pb.ListUsageResponse:
        days, token, (first, last) = await self.rt.usage.by_day(
            owner_id=request.owner_id,
            from_day=request.from_day,
            to_day=request.to_day,
            page_size=request.page.page_size,
            page_token=request.page.page_token,
        )
        return pb.ListUsageResponse(
            days=[pb.UsageDay(**vars(d)) for d in days],
            next_page_token=token,
            from_day=first.isoformat(),
            to_day=last.isoformat(),
        )


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
