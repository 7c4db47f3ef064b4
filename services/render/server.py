"""gRPC surface of the render service: proto <-> `Renderer`. Inputs and results travel as object-storage refs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from pathlib import Path

from google.protobuf import json_format

from idlock import refs
from idlock.errors import InvalidInput, NotFound, Unimplemented
from idlock.grpc_server import ServiceSpec
from idlock.settings import PathsSettings, StorageSettings
from idlock.storage import ObjectStore, open_store
from idlock.v1 import common_pb2
from idlock.v1 import render_service_pb2 as pb
from idlock.v1 import render_service_pb2_grpc as pb_grpc
from services.render.engine import Renderer
from services.render.models import EditRequest, RenderRequest, RenderResult
from services.render.settings import RenderSettings

SETTINGS = RenderSettings
log = logging.getLogger("idlock.render")

DRIFT = {
    pb.DRIFT_MODE_UNSPECIFIED: "none",
    pb.DRIFT_MODE_NONE: "none",
    pb.DRIFT_MODE_OTHER_FACE: "other_face",
    pb.DRIFT_MODE_DISTORTED: "distorted",
}


def provenance_pb(result: RenderResult, lora: common_pb2.LoraRef | None, lora_scale: float) -> pb.RenderProvenance:
    out = pb.RenderProvenance(
        provider=result.provider,
        model=result.model,
        seed=result.seed or 0,
        latency_s=result.latency_s,
        estimated_cost_usd=result.estimated_cost_usd,
        fallback_used=result.fallback_used,
        fallback_reasons=result.fallback_reasons,
        label=result.label,
        attempts=result.attempts,
    )
    if lora is not None and lora.uri and result.provider == "diffusers":
        out.lora.CopyFrom(lora)
        out.lora_scale = lora_scale
    return out


class RenderServicer(pb_grpc.RenderServiceServicer):
    def __init__(self, settings: RenderSettings) -> None:
        self.settings = settings
        self.renderer = Renderer.from_settings(settings)
        self.store: ObjectStore | None = None
        self.data_dir = PathsSettings().data_dir
        #: renders under way, by (output prefix, request fingerprint): a repeated request joins the running one
        self._inflight: dict[tuple[str, str], asyncio.Future] = {}

    async def startup(self) -> None:
        self.store = await open_store(StorageSettings(), self.data_dir)
        for name, why in self.renderer.status().items():
            if why:
                log.info("provider %s unavailable: %s", name, why)

    async def shutdown(self) -> None:
        await self.renderer.aclose()

    async def _images(self, items, what: str) -> list[bytes]:
        return [await refs.fetch_ref(self.store, ref, f"{what} {i}") for i, ref in enumerate(items)]

    async def _lora_path(self, lora: common_pb2.LoraRef) -> str | None:
        """LoRA weights cached on local disk by content hash (the diffusers pipeline loads from a path)."""
        if not lora.uri:
            return None
        data = await refs.fetch_ref(self.store, lora, "lora")
        digest = hashlib.sha256(data).hexdigest()
        path = Path(self.data_dir) / "cache" / "lora" / f"{digest}.safetensors"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
        return str(path)

    async def _store_result(self, result: RenderResult, prefix: str, job_id: str) -> common_pb2.ImageRef:
        prefix = prefix.rstrip("/") or f"edits/{job_id or uuid.uuid4().hex}"
        return await refs.put_image(
            self.store, f"{prefix}/image.png", result.image, width=result.width, height=result.height, mime=result.mime
        )

    async def RenderImage(self, request: pb.RenderImageRequest, context) -> pb.RenderImageResponse:
        """Idempotent per job: the same request for the same job never pays for a second render. A render whose
        caller went away (a crashed worker) still finishes and is stored; the redelivered job's call joins it or
        replays the stored result."""
        if not request.job_id:
            return await self._render_image(request, context.time_remaining(), self._prefix(request))
        prefix = self._prefix(request)
        fingerprint = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
        replay = await self._replay(prefix, fingerprint)
        if replay is not None:
            return replay
        key = (prefix, fingerprint)
        task = self._inflight.get(key)
        if task is None:
            # the render outlives its first caller, so the providers' own timeouts bound it, not that caller's deadline
            task = asyncio.ensure_future(self._render_and_record(request, None, prefix, fingerprint))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    @staticmethod
    def _prefix(request: pb.RenderImageRequest) -> str:
        return request.output_prefix.rstrip("/") or f"renders/{request.job_id or uuid.uuid4().hex}"

    async def _replay(self, prefix: str, fingerprint: str) -> pb.RenderImageResponse | None:
        try:
            record = json.loads(await self.store.get(f"{prefix}/render.json"))
        except NotFound:
            return None
        if record.get("fingerprint") != fingerprint:
            return None
        return json_format.ParseDict(record["response"], pb.RenderImageResponse())

    async def _render_and_record(
        self, request: pb.RenderImageRequest, deadline_s: float | None, prefix: str, fingerprint: str
    ) -> pb.RenderImageResponse:
        response = await self._render_image(request, deadline_s, prefix)
        record = {"fingerprint": fingerprint, "response": json_format.MessageToDict(response)}
        await self.store.put(f"{prefix}/render.json", json.dumps(record).encode(), "application/json")
        return response

    async def _render_image(
        self, request: pb.RenderImageRequest, deadline_s: float | None, prefix: str
    ) -> pb.RenderImageResponse:
        drift_face = await refs.fetch_ref(self.store, request.drift_face, "drift_face") if request.drift_face.uri else None
        req = RenderRequest(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            references=await self._images(request.references, "reference image"),
            pose_image=await refs.fetch_ref(self.store, request.pose, "pose image") if request.pose.uri else None,
            width=request.width or None,
            height=request.height or None,
            aspect_ratio=request.aspect_ratio or None,
            seed=request.seed if request.seed else None,
            lora_path=None if request.bypass_lora else await self._lora_path(request.lora),
            lora_scale=request.lora_scale or 1.0,
            providers=list(request.providers),
            job_id=request.job_id,
            drift=DRIFT.get(request.drift, "none"),
            drift_face=drift_face,
            watermark=request.watermark if request.HasField("watermark") else None,
            deadline_s=deadline_s,
        )
        result = await self.renderer.render(req)
        image = await self._store_result(result, prefix, request.job_id)
        return pb.RenderImageResponse(image=image, provenance=provenance_pb(result, request.lora, req.lora_scale))

    async def EditImage(self, request: pb.EditImageRequest, context) -> pb.EditImageResponse:
        if not request.image.uri:
            raise InvalidInput("image to edit is missing (image.uri)")
        req = EditRequest(
            image=await refs.fetch_ref(self.store, request.image, "image"),
            mask=await refs.fetch_ref(self.store, request.mask, "mask") if request.mask.uri else None,
            references=await self._images(request.references, "reference image"),
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            seed=request.seed if request.seed else None,
            providers=list(request.providers),
            job_id=request.job_id,
            watermark=False,
            deadline_s=context.time_remaining(),
        )
        result = await self.renderer.edit(req)
        image = await self._store_result(result, request.output_prefix, request.job_id or f"edit-{uuid.uuid4().hex}")
        return pb.EditImageResponse(image=image, provenance=provenance_pb(result, None, 0.0))

    async def RenderVideo(self, request: pb.RenderVideoRequest, context) -> pb.RenderVideoResponse:
        raise Unimplemented("RenderVideo is not available yet: Veo video arrives with issue #9")

    async def ListProviders(self, request: pb.ListProvidersRequest, context) -> pb.ListProvidersResponse:
        out = []
        for name, why in self.renderer.status().items():
            out.append(
                pb.ProviderInfo(
                    name=name,
                    available=why is None,
                    reason=why or "",
                    media=[common_pb2.MEDIA_KIND_IMAGE],
                    model=getattr(self.renderer.provider(name), "model", "") or "",
                )
            )
        return pb.ListProvidersResponse(providers=out)


def build(settings: RenderSettings) -> ServiceSpec:
    servicer = RenderServicer(settings)
    return ServiceSpec(
        component="render",
        service_names=[pb.DESCRIPTOR.services_by_name["RenderService"].full_name],
        registrations=[lambda server: pb_grpc.add_RenderServiceServicer_to_server(servicer, server)],
        on_startup=[servicer.startup],
        on_shutdown=[servicer.shutdown],
    )
