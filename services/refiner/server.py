"""gRPC surface of the refiner service: proto <-> `pipeline.refine`.

Attempts are scored IN-PROCESS by an `IdentityEngine` built from the same face settings (IDLOCK_IDENTITY_*)
as the identity service, so scores match that service's calibrated IDR without an RPC per attempt. Characters
(identity vector + reference images) come from the memory service (IDLOCK_MEMORY_ADDR); the render strategy calls
the render service's EditImage (IDLOCK_RENDER_ADDR). Images travel as object-storage refs.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import grpc
import numpy as np

from idlock import grpc_client, refs
from idlock.errors import InvalidInput, PreconditionFailed
from idlock.faces.engine import IdentityEngine, get_engine
from idlock.faces.proto import idr_pb
from idlock.faces.settings import FaceSettings
from idlock.grpc_server import ServiceSpec
from idlock.images import decode_image, encode_png
from idlock.settings import MeshSettings, PathsSettings, StorageSettings
from idlock.storage import ObjectStore, open_store
from idlock.threads import model_executor
from idlock.v1 import (
    common_pb2,
    memory_service_pb2,
    memory_service_pb2_grpc,
    render_service_pb2,
    render_service_pb2_grpc,
)
from idlock.v1 import refiner_service_pb2 as pb
from idlock.v1 import refiner_service_pb2_grpc as pb_grpc
from services.refiner import pipeline
from services.refiner.core import FaceRefiner, Score, SuperResolution, check_identity
from services.refiner.settings import RefinerSettings

SETTINGS = RefinerSettings
log = logging.getLogger("idlock.refiner")

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
        self.mesh = MeshSettings()
        self.engine: IdentityEngine | None = None
        self.refiner: FaceRefiner | None = None
        self.store: ObjectStore | None = None
        self.upscaler: SuperResolution | None = None
        self._pool = model_executor(settings.workers, "refiner", settings.model_thread_priority)
        self._channels: dict[str, grpc.aio.Channel] = {}

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        # the face models load before the service reports SERVING
        self.engine = await loop.run_in_executor(self._pool, get_engine, FaceSettings())
        self.refiner = FaceRefiner(
            self.engine, margin=self.settings.warp_margin, cache_size=self.settings.reference_cache
        )
        self.store = await open_store(StorageSettings(), PathsSettings().data_dir)
        if self.settings.sr_model_path:
            self.upscaler = SuperResolution(self.settings.sr_model_path)
            if self.upscaler.unavailable:
                log.warning("%s; Lanczos + sharpening is used", self.upscaler.unavailable)
        limit = self.settings.max_message_mb
        self._channels = {
            "memory": grpc_client.channel(self.mesh.memory_addr, max_message_mb=limit),
            "render": grpc_client.channel(self.mesh.render_addr, max_message_mb=limit),
        }

    async def shutdown(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn, *args, **kw):
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args, **kw))

    # ----------------------------------------------------------------------------------------------- inputs
    async def _character(self, request: pb.RefineRequest) -> tuple[np.ndarray, list[common_pb2.ImageRef]]:
        if request.character_id:
            stub = memory_service_pb2_grpc.MemoryServiceStub(self._channels["memory"])
            try:
                resp = await stub.GetCharacter(
                    memory_service_pb2.GetCharacterRequest(character_id=request.character_id),
                    timeout=self.settings.memory_timeout_s,
                )
            except grpc.aio.AioRpcError as e:
                raise grpc_client.peer_error(e, f"character {request.character_id!r}") from e
            ch = resp.character
            identity, ref_images = ch.identity, list(ch.reference_images)
            if not identity.values:
                raise PreconditionFailed(f"character {request.character_id!r} has no identity vector yet")
        elif request.identity.values:
            identity, ref_images = request.identity, list(request.references)
        else:
            raise InvalidInput("give character_id, or identity with references")
        vec = check_identity(self.engine, identity.values, identity.encoder)
        return vec, ref_images

    def _strategies(self, strategy: int) -> list[str]:
        if strategy in (pb.REFINE_STRATEGY_UNSPECIFIED, pb.REFINE_STRATEGY_AUTO):
            return list(self.settings.strategy_order)
        name = STRATEGY_NAMES.get(strategy)
        if name is None:
            raise InvalidInput(f"unknown strategy {strategy}")
        return [name]

    # ---------------------------------------------------------------------------------------------- Refine
    async def Refine(self, request: pb.RefineRequest, context) -> pb.RefineResponse:
        s = self.settings
        if not request.image.uri:
            raise InvalidInput("image is missing (image.uri)")
        if request.max_attempts < 0 or request.max_attempts > s.max_attempts_limit:
            raise InvalidInput(
                f"max_attempts must be between 1 and {s.max_attempts_limit} (got {request.max_attempts})"
            )
        if not 0 <= request.threshold <= 1:
            raise InvalidInput(
                f"threshold must be a calibrated IDR between 0 and 1 (got {request.threshold})"
            )
        strategies = self._strategies(request.strategy)
        data = await refs.fetch_ref(self.store, request.image, "image")
        rgb = await self._run(self.engine.pixels, data, "image")
        identity, ref_images = await self._character(request)
        references = [
            await refs.fetch_ref(self.store, r, f"reference image {i}") for i, r in enumerate(ref_images)
        ]
        if not references and "reference-warp" in strategies and len(strategies) == 1:
            raise PreconditionFailed("reference-warp needs the character's reference images; none were given")
        prefix = f"refine/{request.job_id or uuid.uuid4().hex}"

        async def editor(crop_png: bytes, mask_png: bytes, prompt: str, negative: str) -> bytes:
            size = await self._run(lambda: decode_image(crop_png, name="face crop").pixels.shape[:2])
            crop_ref = await refs.put_image(
                self.store, f"{prefix}/crop.png", crop_png, width=size[1], height=size[0]
            )
            mask_ref = await refs.put_image(
                self.store, f"{prefix}/mask.png", mask_png, width=size[1], height=size[0]
            )
            stub = render_service_pb2_grpc.RenderServiceStub(self._channels["render"])
            timeout = s.render_timeout_s
            remaining = context.time_remaining()
            if remaining is not None:
                timeout = max(0.1, min(timeout, remaining - 0.5))
            try:
                resp = await stub.EditImage(
                    render_service_pb2.EditImageRequest(
                        image=crop_ref,
                        mask=mask_ref,
                        references=ref_images,
                        prompt=prompt,
                        negative_prompt=negative,
                        providers=list(s.render_providers),
                        job_id=request.job_id,
                        output_prefix=f"{prefix}/edit",
                    ),
                    timeout=timeout,
                )
            except grpc.aio.AioRpcError as e:
                raise grpc_client.peer_error(e, "render.EditImage") from e
            return await refs.fetch_ref(self.store, resp.image, "edited image")

        outcome = await pipeline.refine(
            self.refiner,
            rgb,
            identity,
            references,
            strategies=strategies,
            max_attempts=request.max_attempts or s.max_attempts,
            threshold=request.threshold or s.threshold,
            seam_bound=s.seam_bound,
            min_gain=s.min_gain,
            render_margin=s.render_margin,
            render_size=s.render_size,
            editor=editor,
            upscaler=self.upscaler,
            run=self._run,
            prompt=request.prompt,
        )
        encoder = self.engine.encoder.name
        attempts = []
        best_ref = request.image
        for a in outcome.attempts:
            msg = pb.RefineAttempt(
                index=a.index,
                strategy=STRATEGY_PB[a.strategy],
                score=score_pb(a.score, encoder),
                seconds=a.seconds,
                seam=a.seam,
                eligible=a.eligible,
                rejected_reason=a.rejected_reason,
            )
            if a.image is not None:
                png = await self._run(encode_png, a.image)
                h, w = a.image.shape[:2]
                msg.image.CopyFrom(
                    await refs.put_image(
                        self.store, f"{prefix}/attempt_{a.index}.png", png, width=w, height=h
                    )
                )
                if outcome.best is a:
                    best_ref = msg.image
            attempts.append(msg)
        return pb.RefineResponse(
            attempts=attempts,
            best=best_ref,
            before=score_pb(outcome.before, encoder),
            after=score_pb(outcome.after, encoder),
            improved=outcome.improved,
            face_found=True,
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
