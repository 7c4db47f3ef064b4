"""gRPC surface of the trainer: each RPC maps its request to one use case and the result to proto, nothing more.

Where things live: `runtime.py` (what the process opens and closes), `golden.py` (golden collection),
`datasets.py` (dataset building), `runs.py` (training runs), `decisions.py` (validation, activation, rollback),
`watch.py` (the degradation watch: IDR over time, automatic rollback), `triggers.py` (when to train again),
`reports.py` (the owner's report),
`erasure.py`, `handlers.py` (bus consumers), `clients.py` (peers). The model code is `dataset.py`, `training.py`,
`validation.py`; the tables are `registry.py`.
"""

from __future__ import annotations

import asyncio
import contextlib

from idlock.bus import Worker
from idlock.errors import InvalidInput
from idlock.faces.settings import FaceSettings
from idlock.grpc_server import ServiceSpec
from idlock.v1 import trainer_service_pb2 as pb
from idlock.v1 import trainer_service_pb2_grpc as pb_grpc
from services.trainer.dataset import FaceFinder
from services.trainer.datasets import Datasets
from services.trainer.decisions import LoraDecisions, ScorerFactory
from services.trainer.erasure import delete_artifacts
from services.trainer.golden import GoldenCollector
from services.trainer.handlers import TrainerHandlers
from services.trainer.registry import TrainerRepository
from services.trainer.reports import learning_report, report_pb
from services.trainer.runs import TrainingRuns
from services.trainer.runtime import TrainerRuntime
from services.trainer.settings import TrainerSettings
from services.trainer.triggers import LearningTriggers
from services.trainer.views import check_character_id, golden_pb, lora_pb, run_pb
from services.trainer.watch import DegradationWatch

SETTINGS = TrainerSettings
#: the kernel's settings it reads besides its own (checked at start-up with them)
ALSO_READS = (FaceSettings,)


class TrainerServicer(pb_grpc.TrainerServiceServicer):
    def __init__(
        self,
        settings: TrainerSettings,
        *,
        face_finder: FaceFinder | None | str = "auto",
        scorer_factory: ScorerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.rt = TrainerRuntime(settings)
        self.datasets = Datasets(self.rt, face_finder)
        self.decisions = LoraDecisions(self.rt, scorer_factory)
        self.runs = TrainingRuns(self.rt, self.datasets, self.decisions)
        self.triggers = LearningTriggers(self.rt, self.datasets, self.runs)
        self.golden = GoldenCollector(self.rt, self.triggers.on_golden)
        self.watch = DegradationWatch(self.rt, self.decisions)
        self.watch.on_degraded = self.triggers.on_degraded
        self.workers: list[Worker] = []
        self._scheduling: asyncio.Task | None = None

    @property
    def repo(self) -> TrainerRepository:
        return self.rt.repo

    async def startup(self) -> None:
        await self.rt.open()
        if self.rt.bus is not None:
            self.workers = await TrainerHandlers(self.rt, self.golden, self.runs, self.watch).start()
        if self.triggers.enabled() and self.settings.retrain_every_s:
            self._scheduling = asyncio.create_task(self.triggers.loop(), name="trainer-schedule")

    async def shutdown(self) -> None:
        if self._scheduling is not None:
            self._scheduling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduling
        for w in self.workers:
            with contextlib.suppress(Exception):
                await w.stop(self.settings.grace_s)
        self.workers.clear()
        await self.rt.close()

    async def ListGoldenImages(
        self, request: pb.ListGoldenImagesRequest, context
    ) -> pb.ListGoldenImagesResponse:
        check_character_id(request.character_id)
        size = min(max(request.page.page_size or 50, 1), 500)
        rows = await self.rt.repo.goldens(request.character_id, limit=size + 1, after=request.page.page_token)
        token = rows[size - 1].id if len(rows) > size else ""
        return pb.ListGoldenImagesResponse(images=[golden_pb(r) for r in rows[:size]], next_page_token=token)

    async def BuildDataset(self, request: pb.BuildDatasetRequest, context) -> pb.BuildDatasetResponse:
        check_character_id(request.character_id)
        built = await self.datasets.build(request.character_id, request.resolution)
        return pb.BuildDatasetResponse(
            dataset_uri=built.uri,
            version=built.version,
            stats=pb.DatasetStats(
                candidates=built.stats["candidates"], kept=built.stats["kept"], dropped=built.stats["dropped"]
            ),
        )

    async def StartTraining(self, request: pb.StartTrainingRequest, context) -> pb.StartTrainingResponse:
        check_character_id(request.character_id)
        run = await self.runs.start(
            request.character_id,
            request.dataset_uri,
            rank=request.rank,
            steps=request.steps,
            learning_rate=request.learning_rate,
            batch_size=request.batch_size,
            request_id=request.request_id,
        )
        return pb.StartTrainingResponse(run=run_pb(run))

    async def GetTrainingRun(self, request: pb.GetTrainingRunRequest, context) -> pb.GetTrainingRunResponse:
        if not request.run_id:
            raise InvalidInput("run_id is required")
        return pb.GetTrainingRunResponse(run=run_pb(await self.rt.repo.get_run(request.run_id)))

    async def ValidateLora(self, request: pb.ValidateLoraRequest, context) -> pb.ValidateLoraResponse:
        if not request.lora_id:
            raise InvalidInput("lora_id is required")
        lora, report = await self.decisions.validate_and_decide(request.lora_id)
        return pb.ValidateLoraResponse(lora=lora_pb(lora), approved=report.approved, reason=report.reason)

    async def GetActiveLora(self, request: pb.GetActiveLoraRequest, context) -> pb.GetActiveLoraResponse:
        check_character_id(request.character_id)
        row = await self.rt.repo.get_active(request.character_id)
        return pb.GetActiveLoraResponse(lora=lora_pb(row)) if row else pb.GetActiveLoraResponse()

    async def ActivateLora(self, request: pb.ActivateLoraRequest, context) -> pb.ActivateLoraResponse:
        if not request.lora_id:
            raise InvalidInput("lora_id is required")
        row = await self.decisions.activate(request.lora_id)
        return pb.ActivateLoraResponse(lora=lora_pb(row))

    async def ArchiveLora(self, request: pb.ArchiveLoraRequest, context) -> pb.ArchiveLoraResponse:
        if not request.lora_id:
            raise InvalidInput("lora_id is required")
        row = await self.decisions.archive(request.lora_id)
        return pb.ArchiveLoraResponse(lora=lora_pb(row))

    async def RollbackLora(self, request: pb.RollbackLoraRequest, context) -> pb.RollbackLoraResponse:
        check_character_id(request.character_id)
        active = await self.decisions.rollback(request.character_id)
        if active is None:
            return pb.RollbackLoraResponse()
        return pb.RollbackLoraResponse(active=lora_pb(active))

    async def ListLoras(self, request: pb.ListLorasRequest, context) -> pb.ListLorasResponse:
        check_character_id(request.character_id)
        return pb.ListLorasResponse(
            loras=[lora_pb(r) for r in await self.rt.repo.list_loras(request.character_id)]
        )

    async def GetLearningReport(
        self, request: pb.GetLearningReportRequest, context
    ) -> pb.GetLearningReportResponse:
        check_character_id(request.character_id)
        return report_pb(await learning_report(self.rt, request.character_id))

    async def DeleteCharacterArtifacts(
        self, request: pb.DeleteCharacterArtifactsRequest, context
    ) -> pb.DeleteCharacterArtifactsResponse:
        objects, rows = await delete_artifacts(self.rt, request.character_id)
        return pb.DeleteCharacterArtifactsResponse(objects_removed=objects, rows_removed=rows)


def spec_for(servicer: TrainerServicer) -> ServiceSpec:
    return ServiceSpec(
        component="trainer",
        service_names=[pb.DESCRIPTOR.services_by_name["TrainerService"].full_name],
        registrations=[lambda server: pb_grpc.add_TrainerServiceServicer_to_server(servicer, server)],
        on_startup=[servicer.startup],
        on_shutdown=[servicer.shutdown],
    )


def build(settings: TrainerSettings) -> ServiceSpec:
    return spec_for(TrainerServicer(settings))
