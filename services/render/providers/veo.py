"""Veo video through the real google-genai client (a long-running operation).

    operation = client.aio.models.generate_videos(...)   # POST {model}:predictLongRunning -> operation name
    operation = client.aio.operations.get(operation)     # polled until done (POST {model}:fetchPredictOperation)
    operation.result.generated_videos[0].video            # the clip: inline bytes, or a URI to download

The google-genai release in use speaks Veo through the Vertex protocol (`vertexai=True`; API-key "express mode"
without a project, or project + location with ambient credentials). Retries, backoff, Retry-After and error
mapping are the Gemini image provider's (this class extends it). The operation name is handed to `progress`
before the first poll so the caller can store it: a restarted worker passes it back (`operation_name`) and
resumes polling instead of paying for a second video.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from PIL import Image

from idlock.errors import (
    ContentBlocked,
    DeadlineExceeded,
    IdlockError,
    InvalidInput,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
    Unavailable,
    Unimplemented,
)
from services.render.models import MAX_VIDEO_REFERENCES, MediaKind, RenderRequest, RenderResult
from services.render.providers.base import VideoProgress, decode_image, encode_png
from services.render.providers.gemini import GeminiProvider
from services.render.video import probe_video

log = logging.getLogger("idlock.render.veo")

#: Veo accepts these aspect ratios
VEO_ASPECTS = ("16:9", "9:16")
#: google.rpc.Code values of a failed operation -> error class
_RPC_CODES: dict[int, type[IdlockError]] = {
    3: InvalidInput,  # INVALID_ARGUMENT
    4: DeadlineExceeded,  # DEADLINE_EXCEEDED
    7: PermissionDenied,  # PERMISSION_DENIED
    8: QuotaExceeded,  # RESOURCE_EXHAUSTED
    9: PreconditionFailed,  # FAILED_PRECONDITION
}


class VeoProvider(GeminiProvider):
    name = "veo"
    supports_video = True

    def __init__(self, settings, **kw: Any) -> None:
        super().__init__(settings, **kw)
        self.model = settings.veo_model

    def _api_key(self) -> str:
        return self.settings.veo_api_key.get_secret_value() or self.settings.gemini_api_key.get_secret_value()

    def unavailable_reason(self) -> str | None:
        if not self.settings.veo_project and not self._api_key():
            return "no API key (IDLOCK_RENDER_VEO_API_KEY and IDLOCK_RENDER_GEMINI_API_KEY are empty)"
        return None

    def _get_client(self):
        if self._client is None:
            from google import genai
            from google.genai import types

            opts: dict[str, Any] = {
                "timeout": max(1, int(self.settings.timeout_s * 1000)),
                "api_version": self.settings.veo_api_version,
                "retry_options": None,  # ours are the only retries
            }
            base_url = self.settings.veo_base_url or self.settings.gemini_base_url
            if base_url:
                opts["base_url"] = base_url
            kw: dict[str, Any] = {"vertexai": True, "http_options": types.HttpOptions(**opts)}
            if self.settings.veo_project:
                kw["project"] = self.settings.veo_project
                kw["location"] = self.settings.veo_location or "us-central1"
            else:
                kw["api_key"] = self._api_key()
            self._client = genai.Client(**kw)
        return self._client

    async def render(self, req: RenderRequest) -> RenderResult:
        raise Unimplemented("veo renders videos only (use the gemini provider for images)")

    # -- video ----------------------------------------------------------------------------------------------------
    def _config(self, req: RenderRequest, notes: list[str]) -> dict[str, Any]:
        from google.genai import types

        config: dict[str, Any] = {"number_of_videos": 1}
        if req.duration_s:
            config["duration_seconds"] = max(1, round(req.duration_s))
        aspect = req.aspect()
        if aspect:
            if aspect in VEO_ASPECTS:
                config["aspect_ratio"] = aspect
            else:
                notes.append(f"aspect ratio {aspect} not offered by veo; its default was used")
        if req.seed is not None:
            config["seed"] = int(req.seed) % 2**32
        if req.negative_prompt.strip():
            config["negative_prompt"] = req.negative_prompt.strip()
        if self.settings.veo_generate_audio:
            config["generate_audio"] = True
        refs = req.references[:MAX_VIDEO_REFERENCES]
        if len(req.references) > MAX_VIDEO_REFERENCES:
            notes.append(
                f"only the first {MAX_VIDEO_REFERENCES} of {len(req.references)} reference images used"
            )
        if refs:
            config["reference_images"] = [
                types.VideoGenerationReferenceImage(
                    image=types.Image(image_bytes=data, mime_type=mime), reference_type="asset"
                )
                for data, mime in (self._png(b, f"reference image {i}") for i, b in enumerate(refs))
            ]
        return config

    @staticmethod
    def _png(data: bytes, what: str) -> tuple[bytes, str]:
        im = decode_image(data, what)  # rejects undecodable input before paying for a call
        return encode_png(im), "image/png"

    @staticmethod
    def _prompt(req: RenderRequest) -> str:
        text = req.prompt.strip()
        if req.dialogue.strip():
            text += f'\nThe character says: "{req.dialogue.strip()}"'
        return text

    async def render_video(self, req: RenderRequest, progress: VideoProgress | None = None) -> RenderResult:
        from google.genai import types

        req.validate()
        t0 = time.perf_counter()
        limit = t0 + self.settings.veo_timeout_s
        end = min(limit, t0 + req.deadline_s) if req.deadline_s else limit
        notes: list[str] = []
        if req.lora_path:
            notes.append("LoRA not used by veo")
        client = self._get_client()
        attempts = 0
        if req.operation_name:
            operation = types.GenerateVideosOperation(name=req.operation_name)
            notes.append(f"resumed operation {req.operation_name}")
            log.info("veo: resuming operation %s", req.operation_name)
        else:
            config = self._config(req, notes)
            prompt = self._prompt(req)
            operation, attempts = await self._with_retries(
                lambda timeout: self._guarded(
                    lambda: client.aio.models.generate_videos(
                        model=self.model, source={"prompt": prompt}, config=config
                    ),
                    timeout,
                ),
                end,
                "start",
            )
            if not operation.name:
                raise Unavailable("veo: malformed response: the operation has no name")
            log.info("veo: operation %s started", operation.name)
        name = operation.name
        if progress is not None:
            await progress(name, 0)
        polls = 0
        while not operation.done:
            interval = self.settings.veo_poll_interval_s

            def not_done(polls: int = polls) -> DeadlineExceeded:
                return DeadlineExceeded(
                    f"veo: operation {name} not done after {polls} polls "
                    f"({time.perf_counter() - t0:.1f}s); it can be resumed",
                    details={"operation_name": name, "polls": polls},
                )

            if time.perf_counter() + interval >= end:
                raise not_done()
            await self._sleep(interval)
            try:
                operation, _ = await self._with_retries(
                    lambda timeout, op=operation: self._guarded(
                        lambda: client.aio.operations.get(op), timeout
                    ),
                    end,
                    "poll",
                )
            except DeadlineExceeded as e:  # the time ran out during the poll: the operation still exists
                raise not_done() from e
            polls += 1
            if progress is not None:
                await progress(name, polls)
        video, mime = await self._video_bytes(client, operation, name)
        info = await asyncio.to_thread(probe_video, video, "veo video")
        duration = info.duration_s
        cost_s = float(self.settings.cost_per_video_second_usd.get(self.name, 0.0))
        return RenderResult(
            image=encode_png(Image.fromarray(info.first)),
            provider=self.name,
            model=self.model,
            seed=req.seed,
            width=info.width,
            height=info.height,
            latency_s=time.perf_counter() - t0,
            estimated_cost_usd=cost_s * (duration or req.duration_s or 0.0),
            label=f"veo/{self.model}",
            attempts=max(1, attempts),
            notes=notes,
            media=MediaKind.VIDEO,
            video=video,
            video_mime=mime,
            last_frame=encode_png(Image.fromarray(info.last)),
            duration_s=duration,
            fps=info.fps,
            operation_name=name,
            polls=polls,
        )

    async def _video_bytes(self, client, operation, name: str) -> tuple[bytes, str]:
        error = operation.error
        if error:
            code = int(error.get("code", 0) or 0)
            message = error.get("message", "") or "no message"
            cls = _RPC_CODES.get(code, Unavailable)
            raise cls(
                f"veo: operation {name} failed: {code} {message}",
                details={"operation_name": name, "rpc_code": code},
            )
        result = operation.result or operation.response
        videos = list(getattr(result, "generated_videos", None) or [])
        if not videos or videos[0].video is None:
            filtered = getattr(result, "rai_media_filtered_count", None)
            if filtered:
                reasons = "; ".join(getattr(result, "rai_media_filtered_reasons", None) or [])
                raise ContentBlocked(
                    f"veo refused the video: {filtered} filtered by safety rules"
                    + (f" ({reasons})" if reasons else ""),
                    details={"operation_name": name},
                )
            raise Unavailable(
                f"veo: operation {name} finished without a video", details={"operation_name": name}
            )
        video = videos[0].video
        data = video.video_bytes
        if not data and video.uri:
            try:
                if video.uri.startswith(("http://", "https://")):
                    data = await self._download_http(video.uri)
                else:
                    data = await client.aio.files.download(file=video)
            except IdlockError:
                raise
            except Exception as e:  # any download fault is transient for the caller
                raise Unavailable(
                    f"veo: cannot download the video {video.uri}: {type(e).__name__}: {e}"
                ) from e
        if not data:
            raise Unavailable(f"veo: operation {name} has a video without bytes or URI")
        return bytes(data), video.mime_type or "video/mp4"

    async def _download_http(self, uri: str) -> bytes:
        """A video delivered by URL (the Gemini API's file URIs): fetched with the API key, with our retries."""
        import httpx

        async def fetch(timeout: float) -> bytes:
            async def get() -> bytes:
                async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as http:
                    r = await http.get(uri, headers={"x-goog-api-key": self._api_key()})
                if r.status_code >= 500 or r.status_code == 429:
                    raise httpx.TransportError(f"HTTP {r.status_code}")
                if r.status_code >= 400:
                    raise Unavailable(f"veo: video download answered HTTP {r.status_code}")
                return r.content

            return await self._guarded(get, timeout)

        data, _ = await self._with_retries(fetch, None, "download")
        return data

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await super().aclose()


__all__ = ["VeoProvider"]
