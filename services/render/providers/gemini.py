"""Gemini image ("Nano-Banana") through the real google-genai client.

The client's own retries are off (no `retry_options`); this module retries 429/5xx and connection errors with
exponential backoff and full jitter, honouring Retry-After, and maps every failure to an `idlock.errors` class.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import io
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from PIL import Image

try:  # google-genai uses httpx2 (a fork with its own exception classes) when it is installed
    import httpx2
except ImportError:  # pragma: no cover
    httpx2 = None

from idlock.errors import (
    ContentBlocked,
    DeadlineExceeded,
    IdlockError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    Unavailable,
)
from services.render.models import EditRequest, RenderRequest, RenderResult, nearest_aspect
from services.render.providers.base import RenderProvider, decode_image, encode_png, image_mime

log = logging.getLogger("idlock.render.gemini")

_TIMEOUT_EXC: tuple[type[BaseException], ...] = tuple(
    c for c in (asyncio.TimeoutError, httpx.TimeoutException, getattr(httpx2, "TimeoutException", None)) if c
)
_TRANSPORT_EXC: tuple[type[BaseException], ...] = tuple(
    c for c in (httpx.TransportError, getattr(httpx2, "TransportError", None), ConnectionError) if c
)

#: finish reasons that mean "the model would not draw this"
SAFETY_FINISH = {
    "SAFETY",
    "IMAGE_SAFETY",
    "PROHIBITED_CONTENT",
    "IMAGE_PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_RECITATION",
}


class _Retryable(Exception):
    def __init__(self, error: IdlockError, retry_after: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


def _final(err: IdlockError, attempts: int, why: str) -> IdlockError:
    err.message = f"{err.message} ({why})"
    err.args = (err.message,)
    err.details.setdefault("attempts", attempts)
    return err


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None when absent or unparseable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class GeminiProvider(RenderProvider):
    name = "gemini"

    def __init__(
        self,
        settings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.model = settings.gemini_model
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client = None

    # -- availability / client --------------------------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        if not self.settings.gemini_api_key.get_secret_value():
            return "no API key (IDLOCK_RENDER_GEMINI_API_KEY is empty)"
        return None

    def _get_client(self):
        if self._client is None:
            from google import genai
            from google.genai import types

            opts: dict[str, Any] = {
                "timeout": max(1, int(self.settings.timeout_s * 1000)),  # milliseconds
                "api_version": self.settings.gemini_api_version,
                "retry_options": None,  # the client's own retries stay off: ours are the only ones
            }
            if self.settings.gemini_base_url:
                opts["base_url"] = self.settings.gemini_base_url
            self._client = genai.Client(
                api_key=self.settings.gemini_api_key.get_secret_value(),
                http_options=types.HttpOptions(**opts),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            with contextlib.suppress(Exception):  # closing is best effort
                await self._client.aio.aclose()
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None

    # -- requests -----------------------------------------------------------------------------------------------
    def _cast_parts(self, req: RenderRequest) -> list[dict]:
        """Each character's references after a line naming whose they are and where the character stands, so
        the model can tell the faces apart."""
        parts: list[dict] = [
            {
                "text": f"This scene shows {len(req.cast)} different people. Keep each one's exact face from their "
                "own reference images, and never give one person's face, clothing, injuries or props to another."
            }
        ]
        for k, c in enumerate(req.cast, start=1):
            where = f" ({c.role})" if c.role else ""
            parts.append({"text": f"Person {k}: {c.name or c.character_id}{where}. Reference images:"})
            parts += [
                self._image_part(b, f"reference image {i} of {c.name}") for i, b in enumerate(c.references)
            ]
        return parts

    # parts are plain dicts: the client validates them once (pydantic objects cost ~0.25 ms more per call)
    async def render(self, req: RenderRequest) -> RenderResult:
        req.validate()
        parts: list[dict] = [{"text": self._prompt_text(req.prompt, req.negative_prompt)}]
        if req.cast:
            parts += self._cast_parts(req)
        elif req.references:
            parts.append({"text": "Reference images of the character (keep this exact face):"})
            parts += [self._image_part(b, f"reference image {i}") for i, b in enumerate(req.references)]
        if req.pose_image:
            parts.append({"text": "Pose reference (match this body pose):"})
            parts.append(self._image_part(req.pose_image, "pose image"))
        notes = []
        if req.lora_path:
            notes.append("LoRA not used by gemini")
        aspect = req.aspect()
        return await self._generate(parts, req.seed, aspect, req.deadline_s, notes)

    async def edit(self, req: EditRequest) -> RenderResult:
        req.validate()
        src = decode_image(req.image, "image to edit")
        text = self._prompt_text(req.prompt, req.negative_prompt)
        if req.mask:
            text += " Change only the region that is white in the mask image; keep everything else identical."
        parts: list[dict] = [{"text": text}, self._image_part(req.image, "image to edit")]
        if req.mask:
            parts.append({"text": "Mask:"})
            parts.append(self._image_part(req.mask, "mask"))
        if req.references:
            parts.append({"text": "Reference images of the character (keep this exact face):"})
            parts += [self._image_part(b, f"reference image {i}") for i, b in enumerate(req.references)]
        return await self._generate(
            parts, req.seed, nearest_aspect(src.width, src.height), req.deadline_s, []
        )

    @staticmethod
    def _prompt_text(prompt: str, negative: str) -> str:
        text = prompt.strip()
        if negative.strip():
            text += f"\nAvoid: {negative.strip()}"
        return text

    @staticmethod
    def _image_part(data: bytes, what: str) -> dict:
        decode_image(data, what)  # reject undecodable input before paying for a call
        mime = image_mime(data)
        if mime == "application/octet-stream" or mime == "image/gif":
            buf = io.BytesIO()
            decode_image(data, what).save(buf, "PNG")
            data, mime = buf.getvalue(), "image/png"
        return {"inline_data": {"data": data, "mime_type": mime}}

    async def _generate(
        self, parts: list, seed: int | None, aspect: str | None, deadline_s: float | None, notes: list[str]
    ) -> RenderResult:
        config: dict[str, Any] = {"response_modalities": ["IMAGE"]}
        if seed is not None:
            config["seed"] = seed
        if aspect:
            config["image_config"] = {"aspect_ratio": aspect}
        contents = [{"role": "user", "parts": parts}]

        t0 = time.perf_counter()
        end = t0 + deadline_s if deadline_s else None
        response, attempts = await self._with_retries(
            lambda timeout: self._call_once(contents, config, timeout), end
        )
        image, w, h = self._extract_image(response)

        latency = time.perf_counter() - t0
        return RenderResult(
            image=image,
            provider=self.name,
            model=self.model,
            seed=seed,
            width=w,
            height=h,
            latency_s=latency,
            estimated_cost_usd=float(self.settings.cost_per_image_usd.get(self.name, 0.0)),
            label=f"gemini/{self.model}",
            attempts=attempts,
            notes=notes,
        )

    async def _with_retries(
        self, call: Callable[[float], Awaitable[Any]], end: float | None, what: str = "attempt"
    ) -> tuple[Any, int]:
        """Run `call(timeout)` (which raises `_Retryable` for transient faults, see `_guarded`) with backoff and
        jitter, honouring Retry-After and the deadline `end` (perf_counter time). Returns (result, attempts)."""
        attempts = 0
        while True:
            attempts += 1
            timeout = self.settings.timeout_s
            if end is not None:
                timeout = min(timeout, end - time.perf_counter())
                if timeout <= 0:
                    raise DeadlineExceeded(f"{self.name}: deadline passed before {what} {attempts}")
            try:
                return await call(timeout), attempts
            except _Retryable as r:
                err = r.error
                if attempts > self.settings.max_retries:
                    raise _final(err, attempts, f"gave up after {attempts} attempts") from r
                delay = self._backoff(attempts)
                if r.retry_after is not None:
                    if r.retry_after > self.settings.backoff_max_s:
                        raise _final(
                            err,
                            attempts,
                            f"server asked to retry after {r.retry_after:g}s, more than "
                            f"IDLOCK_RENDER_BACKOFF_MAX_S={self.settings.backoff_max_s:g}s",
                        ) from r
                    delay = max(delay, r.retry_after)
                if end is not None and time.perf_counter() + delay >= end:
                    raise _final(
                        err, attempts, f"no time left before the deadline for retry {attempts}"
                    ) from r
                log.info(
                    "%s %s %d failed (%s); retrying in %.2fs",
                    self.name,
                    what,
                    attempts,
                    r.error.message,
                    delay,
                )
                await self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: cap = min(backoff_max_s, base * 2**(attempt-1)); delay in [cap/2, cap]."""
        cap = min(self.settings.backoff_max_s, self.settings.backoff_base_s * (2 ** (attempt - 1)))
        return cap / 2 + self._rng.uniform(0, cap / 2)

    async def _call_once(self, contents, config, timeout: float):
        client = self._get_client()
        return await self._guarded(
            lambda: client.aio.models.generate_content(model=self.model, contents=contents, config=config),
            timeout,
        )

    async def _guarded(self, make_call: Callable[[], Awaitable[Any]], timeout: float):
        """One API call under a hard deadline, every failure mapped to an `idlock.errors` class (`_Retryable`
        wrapping the transient ones)."""
        from google.genai import errors as genai_errors

        try:
            async with asyncio.timeout(timeout):  # hard per-call deadline (httpx's timeout is per read)
                return await make_call()
        except _TIMEOUT_EXC as e:
            err = DeadlineExceeded(f"{self.name}: no answer within {timeout:.2f}s (model {self.model})")
            if self.settings.retry_on_timeout:
                raise _Retryable(err) from e
            raise err from e
        except genai_errors.APIError as e:
            raise self._map_api_error(e) from e
        except _TRANSPORT_EXC as e:
            raise _Retryable(
                Unavailable(f"{self.name}: cannot reach the API: {type(e).__name__}: {e}")
            ) from e
        except IdlockError:
            raise
        except Exception as e:  # malformed body: JSON / validation errors inside the client
            raise Unavailable(f"{self.name}: malformed response from the API: {type(e).__name__}: {e}") from e

    def _map_api_error(self, e) -> Exception:
        code = int(getattr(e, "code", 0) or 0)
        msg = getattr(e, "message", None) or str(e)
        status = getattr(e, "status", None) or ""
        text = f"{self.name}: {code} {status}: {msg}".replace(" : ", ": ")
        details = {"http_status": code, "provider_status": status}
        if code in self.settings.retry_status_codes:
            headers = getattr(getattr(e, "response", None), "headers", None) or {}
            retry_after = parse_retry_after(headers.get("retry-after") if hasattr(headers, "get") else None)
            if code == 429:
                err: IdlockError = QuotaExceeded(text, details=details)
            elif code == 504:
                err = DeadlineExceeded(text, details=details)
            else:
                err = Unavailable(text, details=details)
            return _Retryable(err, retry_after)
        if code in (401, 403):
            return PermissionDenied(text, details=details)
        if code == 404:
            return NotFound(text, details=details)
        if 400 <= code < 500:
            return InvalidInput(text, details=details)
        return Unavailable(text, details=details)

    def _extract_image(self, response) -> tuple[bytes, int, int]:
        feedback = getattr(response, "prompt_feedback", None)
        block = getattr(feedback, "block_reason", None) if feedback is not None else None
        if block:
            reason = getattr(block, "value", str(block))
            extra = getattr(feedback, "block_reason_message", None)
            raise ContentBlocked(
                f"gemini blocked the prompt: {reason}" + (f" ({extra})" if extra else ""),
                details={"block_reason": reason},
            )
        candidates = getattr(response, "candidates", None) or []
        if not candidates:
            raise Unavailable("gemini: malformed response: no candidates and no block reason")
        texts: list[str] = []
        finish = None
        for cand in candidates:
            finish = getattr(getattr(cand, "finish_reason", None), "value", None) or finish
            content = getattr(cand, "content", None)
            for part in getattr(content, "parts", None) or []:
                blob = getattr(part, "inline_data", None)
                if blob is not None and blob.data:
                    try:
                        with Image.open(io.BytesIO(blob.data)) as im:
                            w, h = im.size
                            if im.format == "PNG":
                                im.verify()  # chunk structure + CRCs, without inflating the pixels
                                return blob.data, w, h
                            im.load()
                            return encode_png(im.convert("RGB")), w, h
                    except Exception as e:
                        raise Unavailable(
                            f"gemini: malformed response: inline image ({blob.mime_type}) cannot be decoded: {e}"
                        ) from e
                if getattr(part, "text", None):
                    texts.append(part.text)
        if finish in SAFETY_FINISH:
            raise ContentBlocked(
                f"gemini refused to draw the image: finishReason {finish}", details={"finish_reason": finish}
            )
        said = (" Model said: " + " ".join(texts)[:300]) if texts else ""
        raise Unavailable(f"gemini: response has no image (finishReason {finish}).{said}")
