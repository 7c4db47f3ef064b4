"""The render service's use cases: RenderImage, EditImage, RenderVideo and the provider list over the provider
engine (`engine.py`). Inputs and results travel as object-storage refs; images and videos are idempotent per job
(a stored result is replayed, a render under way is joined), and a video's provider operation is recorded as soon
as it exists so that a retry resumes it. No gRPC here: the servicer maps requests and errors."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import mimetypes
import uuid
from pathlib import Path

from google.protobuf import json_format

from idlock import refs
from idlock.aged_cache import AgedCache
from idlock.errors import DeadlineExceeded, IdlockError, InvalidInput, NotFound
from idlock.nsfw import OutputClassifier, OutputModerationSettings
from idlock.settings import MeshSettings, PathsSettings, StorageSettings
from idlock.storage import ObjectStore, open_store
from idlock.v1 import common_pb2
from idlock.v1 import render_service_pb2 as pb
from services.render import paid
from services.render.clients import TrainerClient
from services.render.engine import Renderer
from services.render.lora_cache import LoraCache
from services.render.models import CastPart, EditRequest, RenderRequest, RenderResult, SceneState
from services.render.settings import RenderSettings

log = logging.getLogger("idlock.render")

DRIFT = {
    pb.DRIFT_MODE_UNSPECIFIED: "none",
    pb.DRIFT_MODE_NONE: "none",
    pb.DRIFT_MODE_OTHER_FACE: "other_face",
    pb.DRIFT_MODE_DISTORTED: "distorted",
}


def provenance_pb(
    result: RenderResult, lora: common_pb2.LoraRef | None, lora_scale: float
) -> pb.RenderProvenance:
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


class Rendering:
    """The render service's use cases over the provider engine (`engine.Renderer`): images, edits and videos,
    each idempotent per job, with inputs fetched from and results stored in object storage."""

    def __init__(self, settings: RenderSettings) -> None:
        self.settings = settings
        self.renderer = Renderer.from_settings(settings)
        self.store: ObjectStore | None = None
        #: LoRA weights on local disk while their stored object exists (`lora_cache.py`)
        self.loras: LoraCache | None = None
        self._sweeping: asyncio.Task | None = None
        self.data_dir = PathsSettings().data_dir
        self.trainer = TrainerClient(MeshSettings().trainer_addr)
        #: the NSFW classifier every output passes before it is kept (`idlock.nsfw`; an optional extra)
        self.classifier = OutputClassifier(OutputModerationSettings())
        #: renders under way, by (output prefix, request fingerprint): a repeated request joins the running one
        self._inflight: dict[tuple[str, str], asyncio.Future] = {}
        #: rendered images whose saving failed, by the same key: the retry saves them (`paid.py`)
        self._held: AgedCache[tuple[str, str], tuple[RenderResult, pb.RenderProvenance]] = paid.held_renders(
            settings.held_render_max_age_s
        )

    async def open(self) -> None:
        self.store = await open_store(StorageSettings(), self.data_dir)
        self.loras = LoraCache(self.store, Path(self.data_dir) / "cache" / "lora", self._forget_adapter)
        self._sweeping = asyncio.create_task(
            self.loras.sweep_every(self.settings.lora_cache_sweep_s), name="lora-cache-sweep"
        )
        self._held.start()
        for name, why in self.renderer.status().items():
            if why:
                log.info("provider %s unavailable: %s", name, why)

    async def close(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeping
        await self._held.close()
        await self.trainer.close()
        await self.renderer.aclose()

    async def _forget_adapter(self, path: str) -> None:
        """Unload the diffusers adapter loaded from `path` (its cached file is about to be deleted)."""
        pipeline = getattr(self.renderer.built("diffusers"), "pipeline", None)
        if pipeline is not None:  # a request may name diffusers though the configured order does not
            await asyncio.to_thread(pipeline.forget_lora, path)

    def _uses_diffusers(self, request: pb.RenderImageRequest) -> bool:
        try:
            order = self.renderer._order(list(request.providers))
        except InvalidInput:
            return False  # the render itself reports the bad provider name
        return "diffusers" in order and self.renderer.provider("diffusers").unavailable_reason() is None

    async def _active_lora(self, request: pb.RenderImageRequest) -> tuple[common_pb2.LoraRef | None, str]:
        """Auto-deployment: the LoRA to use, and a note when the trainer could not say. An explicit
        `request.lora` wins; `bypass_lora` turns LoRAs off; otherwise the character's active LoRA (trainer
        GetActiveLora), asked only when the diffusers provider could serve the request."""
        if request.bypass_lora:
            return None, ""
        if request.cast:
            if request.lora.uri or self._uses_diffusers(request):
                return None, "lora: not applied to a scene of several characters; rendered without one"
            return None, ""
        if request.lora.uri:
            return request.lora, ""
        if not request.character_id or not self._uses_diffusers(request):
            return None, ""
        try:
            return await self.trainer.active_lora(request.character_id), ""
        except Exception as e:  # noqa: BLE001 - the render goes on without a LoRA and says so
            code = e.details.get("code", type(e).__name__) if isinstance(e, IdlockError) else type(e).__name__
            log.warning("active LoRA of %s unknown (%s); rendering without one", request.character_id, code)
            return None, f"lora: the trainer did not answer GetActiveLora ({code}); rendered without a LoRA"

    async def _images(self, items, what: str) -> list[bytes]:
        return [await refs.fetch_ref(self.store, ref, f"{what} {i}") for i, ref in enumerate(items)]

    async def _lora_path(self, lora: common_pb2.LoraRef) -> str | None:
        if not lora.uri:
            return None
        assert self.loras is not None, "Rendering.open() was not awaited"
        return await self.loras.path(lora)

    async def _store_result(self, result: RenderResult, prefix: str, job_id: str) -> common_pb2.ImageRef:
        prefix = prefix.rstrip("/") or f"edits/{job_id or uuid.uuid4().hex}"
        return await refs.put_image(
            self.store,
            f"{prefix}/image.png",
            result.image,
            width=result.width,
            height=result.height,
            mime=result.mime,
        )

    async def render_image(
        self, request: pb.RenderImageRequest, deadline_s: float | None
    ) -> pb.RenderImageResponse:
        """Idempotent per job: the same request for the same job never pays for a second render. A render whose
        caller went away (a crashed worker) still finishes and is stored; the redelivered job's call joins it or
        replays the stored result."""
        if not request.job_id:
            return await self._render_image(request, deadline_s, self._prefix(request))
        prefix = self._prefix(request)
        fingerprint = hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()
        replay = await self._replay_json(f"{prefix}/render.json", fingerprint, pb.RenderImageResponse())
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

    async def _render_and_record(
        self, request: pb.RenderImageRequest, deadline_s: float | None, prefix: str, fingerprint: str
    ) -> pb.RenderImageResponse:
        """Render once, then save (image, then the replay record); a save that fails keeps the rendered image
        here, and the retry saves it instead of paying for another render."""
        key = (prefix, fingerprint)
        held = self._held.get(key, None)
        if held is None:
            held = await self._render_only(request, deadline_s, prefix, count_paid=True)
            self._held.put(key, held)
        else:
            log.info(
                "job %s: saving the image rendered before storage failed; not rendering again", request.job_id
            )
        result, provenance = held
        image = await paid.saving(lambda: self._store_result(result, prefix, request.job_id))
        response = pb.RenderImageResponse(image=image, provenance=provenance)
        record = {"fingerprint": fingerprint, "response": json_format.MessageToDict(response)}
        await paid.saving(
            lambda: self.store.put(f"{prefix}/render.json", json.dumps(record).encode(), "application/json")
        )
        self._held.pop(key)
        return response

    async def _render_image(
        self, request: pb.RenderImageRequest, deadline_s: float | None, prefix: str
    ) -> pb.RenderImageResponse:
        result, provenance = await self._render_only(request, deadline_s, prefix)
        image = await self._store_result(result, prefix, request.job_id)
        return pb.RenderImageResponse(image=image, provenance=provenance)

    async def _render_only(
        self,
        request: pb.RenderImageRequest,
        deadline_s: float | None,
        prefix: str,
        *,
        count_paid: bool = False,
    ) -> tuple[RenderResult, pb.RenderProvenance]:
        """The render itself (the part that may cost money); `count_paid`: each paid call is recorded under
        `prefix` before it is made."""
        drift_face = (
            await refs.fetch_ref(self.store, request.drift_face, "drift_face")
            if request.drift_face.uri
            else None
        )
        lora, lora_note = await self._active_lora(request)
        cast = [
            CastPart(
                character_id=c.character_id,
                name=c.name,
                placement=c.placement,
                role=c.role,
                references=await self._images(c.references, f"reference image of {c.name or c.character_id}"),
                state=SceneState.of(c.state),
            )
            for c in request.cast
        ]
        req = RenderRequest(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            references=[r for c in cast for r in c.references]
            if cast
            else await self._images(request.references, "reference image"),
            cast=cast,
            pose_image=await refs.fetch_ref(self.store, request.pose, "pose image")
            if request.pose.uri
            else None,
            width=request.width or None,
            height=request.height or None,
            aspect_ratio=request.aspect_ratio or None,
            seed=request.seed if request.seed else None,
            lora_path=await self._lora_path(lora) if lora is not None else None,
            lora_scale=request.lora_scale or 1.0,
            providers=list(request.providers),
            job_id=request.job_id,
            drift=DRIFT.get(request.drift, "none"),
            drift_face=drift_face,
            watermark=request.watermark if request.HasField("watermark") else None,
            deadline_s=deadline_s,
            state=SceneState.of(request.state) if request.HasField("state") else None,
        )
        calls = 0

        async def before_paid(provider: str) -> None:
            nonlocal calls
            calls = await paid.count_paid_call(self.store, prefix)

        result = await self.renderer.render(req, before_paid if count_paid else None)
        # a flagged image ends here (ContentBlocked, reason moderated): it is neither held nor stored
        moderation = await self.classifier.screen(result.image)
        provenance = provenance_pb(result, lora, req.lora_scale)
        provenance.moderation = moderation
        if lora_note:
            provenance.fallback_reasons.append(lora_note)
        if calls:
            provenance.paid_calls = calls
            if calls > 1:  # an earlier call's outcome was lost (the service died mid-call): both are paid
                provenance.estimated_cost_usd *= calls
                provenance.fallback_reasons.append(
                    f"paid call repeated: {calls} calls to {result.provider} for this image (an earlier call's "
                    "result was lost)"
                )
        return result, provenance

    async def edit_image(
        self, request: pb.EditImageRequest, deadline_s: float | None
    ) -> pb.EditImageResponse:
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
            deadline_s=deadline_s,
        )
        result = await self.renderer.edit(req)
        moderation = await self.classifier.screen(result.image)
        image = await self._store_result(
            result, request.output_prefix, request.job_id or f"edit-{uuid.uuid4().hex}"
        )
        provenance = provenance_pb(result, None, 0.0)
        provenance.moderation = moderation
        return pb.EditImageResponse(image=image, provenance=provenance)

    async def render_video(
        self, request: pb.RenderVideoRequest, deadline_s: float | None
    ) -> pb.RenderVideoResponse:
        """Idempotent per job like RenderImage (stored `video.json` + in-flight join), and resumable: the provider
        operation is recorded (`video_operation.json`) as soon as it exists, so a redelivered job, or a request
        carrying `operation_name`, polls the same operation instead of paying for a second video."""
        prefix = self._video_prefix(request)
        if not request.job_id:
            return await self._render_video(request, deadline_s, prefix, "")
        fingerprint = self._video_fingerprint(request)
        replay = await self._replay_json(f"{prefix}/video.json", fingerprint, pb.RenderVideoResponse())
        if replay is not None:
            return replay
        key = (prefix, f"video:{fingerprint}")
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._render_video_and_record(request, prefix, fingerprint))
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    @staticmethod
    def _video_prefix(request: pb.RenderVideoRequest) -> str:
        return request.output_prefix.rstrip("/") or f"videos/{request.job_id or uuid.uuid4().hex}"

    @staticmethod
    def _video_fingerprint(request: pb.RenderVideoRequest) -> str:
        """The request without `operation_name`: a resuming call is the same request as the one it resumes."""
        clean = pb.RenderVideoRequest()
        clean.CopyFrom(request)
        clean.operation_name = ""
        return hashlib.sha256(clean.SerializeToString(deterministic=True)).hexdigest()

    async def _replay_json(self, key: str, fingerprint: str, message):
        """The stored response of an earlier identical request (same fingerprint), or None."""
        try:
            record = json.loads(await self.store.get(key))
        except NotFound:
            return None
        if record.get("fingerprint") != fingerprint:
            return None
        return json_format.ParseDict(record["response"], message)

    async def _render_video_and_record(
        self, request: pb.RenderVideoRequest, prefix: str, fingerprint: str
    ) -> pb.RenderVideoResponse:
        operation = request.operation_name
        if not operation:  # a previous call for this job started one: resume it
            try:
                record = json.loads(await self.store.get(f"{prefix}/video_operation.json"))
                if record.get("fingerprint") == fingerprint:
                    operation = record.get("operation_name", "")
            except NotFound:
                pass
        try:
            response = await self._render_video(request, None, prefix, operation, fingerprint)
        except IdlockError as e:
            # an operation that ended in an error is not resumed: the retry starts a fresh one (a failed
            # operation is not billed); one still running (deadline) stays recorded and is resumed
            if e.details.get("operation_name") and not isinstance(e, DeadlineExceeded):
                with contextlib.suppress(Exception):
                    await self.store.delete(f"{prefix}/video_operation.json")
            raise
        record = {"fingerprint": fingerprint, "response": json_format.MessageToDict(response)}
        await self.store.put(f"{prefix}/video.json", json.dumps(record).encode(), "application/json")
        return response

    async def _render_video(
        self,
        request: pb.RenderVideoRequest,
        deadline_s: float | None,
        prefix: str,
        operation: str,
        fingerprint: str = "",
    ) -> pb.RenderVideoResponse:
        from services.render.models import MediaKind

        drift_face = (
            await refs.fetch_ref(self.store, request.drift_face, "drift_face")
            if request.drift_face.uri
            else None
        )
        req = RenderRequest(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            references=await self._images(request.references, "reference image"),
            aspect_ratio=request.aspect_ratio or None,
            seed=request.seed if request.seed else None,
            providers=list(request.providers),
            job_id=request.job_id,
            drift=DRIFT.get(request.drift, "none"),
            drift_face=drift_face,
            watermark=True if request.watermark else None,  # not asked: the settings decide
            deadline_s=deadline_s,
            state=SceneState.of(request.state) if request.HasField("state") else None,
            media=MediaKind.VIDEO,
            duration_s=request.duration_s or None,
            dialogue=request.dialogue,
            operation_name=operation or request.operation_name,
        )
        recorded: list[str] = []

        async def progress(op: str, polls: int) -> None:
            if fingerprint and op not in recorded:
                recorded.append(op)
                record = {"fingerprint": fingerprint, "operation_name": op}
                await self.store.put(
                    f"{prefix}/video_operation.json", json.dumps(record).encode(), "application/json"
                )
            log.info("job %s: video operation %s, %d polls", request.job_id, op, polls)

        result = await self.renderer.render_video(req, progress)
        # the poster frame is what the classifier sees of a clip
        moderation = (
            await self.classifier.screen(result.image) if result.image else "not classified (no poster)"
        )
        mime = result.video_mime or "video/mp4"
        video = await refs.put_video(
            self.store,
            f"{prefix}/video{mimetypes.guess_extension(mime) or '.mp4'}",
            result.video or b"",
            width=result.width,
            height=result.height,
            duration_s=result.duration_s,
            fps=result.fps,
            mime=mime,
        )
        provenance = provenance_pb(result, None, 0.0)
        provenance.moderation = moderation
        if not provenance.estimated_cost_usd:
            per_s = float(self.settings.cost_per_video_second_usd.get(result.provider, 0.0))
            provenance.estimated_cost_usd = per_s * result.duration_s
        return pb.RenderVideoResponse(
            video=video, provenance=provenance, operation_name=result.operation_name, polls=result.polls
        )

    def providers(self) -> pb.ListProvidersResponse:
        out = []
        status = self.renderer.status()
        for name in self.settings.video_providers:  # video-only providers (veo) after the image ones
            if name not in status:
                status[name] = self.renderer.provider(name).unavailable_reason()
        for name, why in status.items():
            provider = self.renderer.provider(name)
            media = [common_pb2.MEDIA_KIND_IMAGE] if name in self.settings.providers else []
            if provider.supports_video and name in self.settings.video_providers:
                media.append(common_pb2.MEDIA_KIND_VIDEO)
            out.append(
                pb.ProviderInfo(
                    name=name,
                    available=why is None,
                    reason=why or "",
                    media=media,
                    model=getattr(provider, "model", "") or "",
                )
            )
        return pb.ListProvidersResponse(providers=out)


__all__ = ["DRIFT", "Rendering", "provenance_pb"]
