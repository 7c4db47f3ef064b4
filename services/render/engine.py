"""The render core the servicer calls: provider selection, fallback, deadline, watermark.

renderer = Renderer.from_settings(RenderSettings())
result = await renderer.render(RenderRequest(prompt=..., references=[...], job_id=...))
await renderer.aclose()
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from idlock.errors import (
    DeadlineExceeded,
    IdlockError,
    InvalidInput,
    QuotaExceeded,
    Unavailable,
    Unimplemented,
)
from idlock.provenance import mark_video
from idlock.threads import model_executor
from services.render import observe
from services.render.models import EditRequest, MediaKind, RenderRequest, RenderResult
from services.render.providers.base import RenderProvider, VideoProgress
from services.render.settings import KNOWN_PROVIDERS, VIDEO_PROVIDERS, RenderSettings
from services.render.video import VIDEO_MIME, stamp_video
from services.render.watermark import apply_watermark, draw_mark

log = logging.getLogger("idlock.render")

#: errors after which the next provider is tried (when settings.fallback_on_transient); never for bad input,
#: permission or safety refusals
TRANSIENT = (Unavailable, DeadlineExceeded, QuotaExceeded)


def build_provider(name: str, settings: RenderSettings) -> RenderProvider:
    if name == "gemini":
        from services.render.providers.gemini import GeminiProvider

        return GeminiProvider(settings)
    if name == "diffusers":
        from services.render.providers.diffusers_local import DiffusersProvider

        return DiffusersProvider(settings)
    if name == "veo":
        from services.render.providers.veo import VeoProvider

        return VeoProvider(settings)
    if name == "compositor":
        from services.render.providers.compositor import CompositorProvider

        return CompositorProvider(settings)
    raise InvalidInput(f"unknown render provider {name!r}; known: {list(KNOWN_PROVIDERS)}")


class Renderer:
    def __init__(
        self, settings: RenderSettings, providers: Mapping[str, RenderProvider] | None = None
    ) -> None:
        self.settings = settings
        self._providers: dict[str, RenderProvider] = dict(providers or {})
        # drawing a mark decodes and encodes the image or clip (tens of ms and more): off the loop, at the model
        # priority
        self._marking = model_executor(2, "watermark", settings.model_thread_priority)

    @classmethod
    def from_settings(cls, settings: RenderSettings | None = None) -> Renderer:
        return cls(settings or RenderSettings())

    def provider(self, name: str) -> RenderProvider:
        if name not in self._providers:
            self._providers[name] = build_provider(name, self.settings)
        return self._providers[name]

    def built(self, name: str) -> RenderProvider | None:
        """The provider when one was made (a request or a status check asked for it), else None."""
        return self._providers.get(name)

    def status(self) -> dict[str, str | None]:
        """Per configured provider: None when usable, else why not (for health/readiness and the CLI)."""
        return {name: self.provider(name).unavailable_reason() for name in self.settings.providers}

    def _order(self, requested: list[str]) -> list[str]:
        if not requested:
            return list(self.settings.providers)
        order = []
        for name in requested:
            n = name.strip().lower()
            if n not in KNOWN_PROVIDERS:
                raise InvalidInput(f"unknown render provider {name!r}; known: {list(KNOWN_PROVIDERS)}")
            if n not in order:
                order.append(n)
        return order

    async def render(
        self, req: RenderRequest, before_paid: Callable[[str], Awaitable[None]] | None = None
    ) -> RenderResult:
        """Render with fallback; `before_paid(provider)` is awaited before each call to a paid provider (one
        with a cost per image), and an error from it stops the render before that call."""
        req.validate()
        if req.media != MediaKind.IMAGE:
            return await self.render_video(req)
        return await self._run(req, "render", before_paid)

    def paid(self, name: str) -> bool:
        return float(self.settings.cost_per_image_usd.get(name, 0.0)) > 0

    def _video_order(self, requested: list[str]) -> list[str]:
        """Video providers to try: the requested ones that render video ("gemini" means veo), else the
        configured video order."""
        if not requested:
            return list(self.settings.video_providers)
        order = []
        for name in self._order(requested):
            n = "veo" if name == "gemini" else name
            if n in VIDEO_PROVIDERS and n not in order:
                order.append(n)
        if not order:
            raise InvalidInput(
                f"none of the requested providers {list(requested)} renders video; video providers: "
                f"{list(VIDEO_PROVIDERS)}"
            )
        return order

    async def render_video(self, req: RenderRequest, progress: VideoProgress | None = None) -> RenderResult:
        """Text(+references) to video with fallback. A request resuming an operation (`operation_name`) goes to
        the first available provider that can resume (veo) and never falls back to a second paid render."""
        req.validate()
        req = dataclasses.replace(req, media=MediaKind.VIDEO)
        if req.operation_name:
            order = ["veo"]
        else:
            order = self._video_order(req.providers)
        t0 = time.perf_counter()
        end = t0 + req.deadline_s if req.deadline_s else None
        reasons: list[str] = []
        last_error: IdlockError | None = None
        for name in order:
            provider = self.provider(name)
            why = provider.unavailable_reason()
            if why:
                observe.fell_back(name)
                reasons.append(f"{name}: {why}")
                continue
            if end is not None:
                left = end - time.perf_counter()
                if left <= 0:
                    raise DeadlineExceeded("video render deadline passed before provider " + name)
                req = dataclasses.replace(req, deadline_s=left)
            started: list[str] = []

            async def on_progress(op: str, polls: int, _started=started) -> None:
                if not _started:
                    _started.append(op)
                if progress is not None:
                    await progress(op, polls)

            called, model = time.perf_counter(), observe.model_of(provider, name)
            try:
                result = await provider.render_video(req, on_progress)
            except Unimplemented as e:
                observe.fell_back(name)
                reasons.append(f"{name}: {e.message}")
                last_error = e
                continue
            except TRANSIENT as e:
                observe.call_ended(name, model, "video", called, error=e)
                # once a paid operation exists, falling back would pay twice: the caller retries / resumes it
                if started or not self.settings.fallback_on_transient:
                    raise
                observe.fell_back(name)
                log.warning("video provider %s failed (%s); trying the next one", name, e.message)
                reasons.append(f"{name}: {e.message}")
                last_error = e
                continue
            except Exception as e:
                observe.call_ended(name, model, "video", called, error=e)
                raise
            observe.call_ended(name, model, "video", called, result)
            result.fallback_reasons = reasons + result.fallback_reasons
            result.fallback_used = bool(reasons)
            result.latency_s = time.perf_counter() - t0
            await self._mark_video(result, req)
            return result
        summary = "; ".join(reasons) or "no video provider configured"
        if isinstance(last_error, TRANSIENT):
            raise type(last_error)(
                f"every video provider failed: {summary}", details={"fallback_reasons": reasons}
            ) from last_error
        raise Unavailable(f"no video provider available: {summary}", details={"fallback_reasons": reasons})

    async def _marked(self, mark: Callable[..., bytes], media: bytes, *args: Any, **kwargs: Any) -> bytes:
        """`media` with a mark drawn (decoding and encoding it): on the marking threads, off the loop."""
        call = functools.partial(mark, media, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._marking, call)

    async def _mark_video(self, result: RenderResult, req: RenderRequest) -> None:
        """The poster image and the clip carry the metadata mark. The poster's visible mark follows `watermark`;
        the clip's frames are stamped when the request asks for a watermark or `watermark_video_frames` says so
        (re-encoded as WebM: OpenCV has no H.264 encoder)."""
        s = self.settings
        fields = {"job_id": req.job_id, "provider": result.provider, "label": result.label}
        poster = s.watermark if req.watermark is None else req.watermark
        frames = s.watermark_video_frames if req.watermark is None else req.watermark
        if result.image:
            result.image = await self._marked(apply_watermark, result.image, visible=poster, **fields)
            result.mime = "image/png"
        if result.video:
            if frames:
                result.video = await self._marked(stamp_video, result.video, draw_mark)
                result.video_mime = VIDEO_MIME
            result.video = mark_video(result.video, result.video_mime or "video/mp4", **fields)
        result.watermarked = bool(poster or frames)

    async def edit(self, req: EditRequest) -> RenderResult:
        req.validate()
        return await self._run(req, "edit")

    async def _run(
        self,
        req: RenderRequest | EditRequest,
        op: str,
        before_paid: Callable[[str], Awaitable[None]] | None = None,
    ) -> RenderResult:
        t0 = time.perf_counter()
        end = t0 + req.deadline_s if req.deadline_s else None
        reasons: list[str] = []
        last_error: IdlockError | None = None
        for name in self._order(req.providers):
            provider = self.provider(name)
            why = provider.unavailable_reason()
            if why:
                log.info("render provider %s skipped: %s", name, why)
                observe.fell_back(name)
                reasons.append(f"{name}: {why}")
                continue
            if end is not None:
                left = end - time.perf_counter()
                if left <= 0:
                    raise DeadlineExceeded(
                        f"render deadline passed before provider {name}; " + "; ".join(reasons)
                    )
                req = dataclasses.replace(req, deadline_s=left)
            if before_paid is not None and self.paid(name):
                await before_paid(name)
            called, model = time.perf_counter(), observe.model_of(provider, name)
            try:
                result = await (provider.render(req) if op == "render" else provider.edit(req))  # type: ignore[arg-type]
            except Unimplemented as e:
                observe.fell_back(name)
                reasons.append(f"{name}: {e.message}")
                last_error = e
                continue
            except TRANSIENT as e:
                observe.call_ended(name, model, op, called, error=e)
                if not self.settings.fallback_on_transient:
                    raise
                observe.fell_back(name)
                log.warning("render provider %s failed (%s); trying the next one", name, e.message)
                reasons.append(f"{name}: {e.message}")
                last_error = e
                continue
            except Exception as e:
                observe.call_ended(name, model, op, called, error=e)
                raise
            observe.call_ended(name, model, op, called, result)
            result.fallback_reasons = reasons + result.fallback_reasons
            result.fallback_used = bool(reasons)
            result.latency_s = time.perf_counter() - t0
            if not result.estimated_cost_usd:
                result.estimated_cost_usd = float(self.settings.cost_per_image_usd.get(name, 0.0))
            wm = self.settings.watermark if req.watermark is None else req.watermark
            # every image says it was made by AI in its metadata; the visible mark is the setting's call
            result.image = await self._marked(
                apply_watermark,
                result.image,
                job_id=req.job_id,
                provider=result.provider,
                label=result.label,
                visible=wm,
            )
            result.mime = "image/png"
            result.watermarked = wm
            return result
        summary = "; ".join(reasons) or "no provider configured"
        if isinstance(last_error, TRANSIENT):
            err = type(last_error)(
                f"every render provider failed: {summary}", details={"fallback_reasons": reasons}
            )
            raise err from last_error
        raise Unavailable(f"no render provider available: {summary}", details={"fallback_reasons": reasons})

    async def aclose(self) -> None:
        for p in self._providers.values():
            await p.aclose()
        self._marking.shutdown(wait=False, cancel_futures=True)
