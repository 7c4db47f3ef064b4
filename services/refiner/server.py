"""gRPC surface of the refiner service: `Refine` maps its request to the use case (`refine.py`) and the result to
proto, nothing more.

Attempts are scored in-process by an `IdentityEngine` built from the same face settings (IDLOCK_IDENTITY_*) as
the identity service, so scores match that service's calibrated IDR without an RPC per attempt. Characters
(identity vector + reference images) come from the memory service; the render strategy calls the render
service's EditImage (`clients.py`). Images travel as object-storage refs.
"""

from __future__ import annotations

from idlock.errors import InvalidInput
from idlock.faces.proto import copy_pb, idr_pb
from idlock.faces.settings import FaceSettings
from idlock.grpc_server import ServiceSpec
from idlock.v1 import common_pb2
from idlock.v1 import refiner_service_pb2 as pb
from idlock.v1 import refiner_service_pb2_grpc as pb_grpc
from services.refiner.core import Score
from services.refiner.refine import Refiner
from services.refiner.settings import RefinerSettings


def box_tuple(b) -> tuple[float, float, float, float]:
    """A proto box (x, y, width, height) as (x0, y0, x1, y1)."""
    return (b.x, b.y, b.x + b.width, b.y + b.height)


SETTINGS = RefinerSettings
#: the kernel's settings it reads besides its own (checked at start-up with them)
ALSO_READS = (FaceSettings,)

STRATEGY_NAMES = {
    pb.REFINE_STRATEGY_RENDER: "render",
    pb.REFINE_STRATEGY_REFERENCE_WARP: "reference-warp",
}
STRATEGY_PB = {v: k for k, v in STRATEGY_NAMES.items()}


def score_pb(score: Score | None, encoder: str) -> common_pb2.IdrScore:
    if score is None:
        return common_pb2.IdrScore(encoder=encoder)
    return idr_pb(score.raw, score.calibrated, score.verdict, encoder)


class RefinerServicer(pb_grpc.RefinerServiceServicer):
    def __init__(self, settings: RefinerSettings) -> None:
        self.settings = settings
        self.refiner = Refiner(settings)

    async def startup(self) -> None:
        await self.refiner.open()

    async def shutdown(self) -> None:
        await self.refiner.close()

    def _strategies(self, strategy: int) -> list[str]:
        if strategy in (pb.REFINE_STRATEGY_UNSPECIFIED, pb.REFINE_STRATEGY_AUTO):
            return list(self.settings.strategy_order)
        name = STRATEGY_NAMES.get(strategy)
        if name is None:
            raise InvalidInput(f"unknown strategy {strategy}")
        return [name]

    async def Refine(self, request: pb.RefineRequest, context) -> pb.RefineResponse:
        done = await self.refiner.refine(
            request.image,
            strategies=self._strategies(request.strategy),
            character_id=request.character_id,
            identity=request.identity,
            references=list(request.references),
            max_attempts=request.max_attempts,
            threshold=request.threshold,
            job_id=request.job_id,
            prompt=request.prompt,
            target_box=box_tuple(request.target_box) if request.HasField("target_box") else None,
        )
        attempts = []
        for stored in done.attempts:
            a = stored.attempt
            msg = pb.RefineAttempt(
                index=a.index,
                strategy=STRATEGY_PB[a.strategy],
                score=score_pb(a.score, done.encoder),
                seconds=a.seconds,
                seam=a.seam,
                eligible=a.eligible,
                rejected_reason=a.rejected_reason,
                copy=copy_pb(a.copy),
            )
            if stored.image is not None:
                msg.image.CopyFrom(stored.image)
            attempts.append(msg)
        return pb.RefineResponse(
            attempts=attempts,
            best=done.best,
            before=score_pb(done.before, done.encoder),
            after=score_pb(done.after, done.encoder),
            improved=done.improved,
            face_found=True,
            copy=copy_pb(done.copy),
        )


def build(settings: RefinerSettings) -> ServiceSpec:
    servicer = RefinerServicer(settings)
    return ServiceSpec(
        component="refiner",
        service_names=[pb.DESCRIPTOR.services_by_name["RefinerService"].full_name],
        registrations=[lambda server: pb_grpc.add_RefinerServiceServicer_to_server(servicer, server)],
        on_startup=[servicer.startup],
        on_shutdown=[servicer.shutdown],
    )
