"""The provider interface and small image helpers shared by the providers."""

from __future__ import annotations

import io
import random
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from PIL import Image, ImageOps, UnidentifiedImageError

from idlock.errors import InvalidInput, Unimplemented
from services.render.models import EditRequest, RenderRequest, RenderResult

MAX_PIXELS = 40_000_000

#: awaited with (operation name, polls so far) while a long-running video render advances
VideoProgress = Callable[[str, int], Awaitable[None]]


class RenderProvider(ABC):
    """One back-end. Core code, no grpc. Errors are `idlock.errors` with messages naming the problem."""

    #: short stable name used in settings.providers and results
    name: str = ""
    supports_video: bool = False

    def unavailable_reason(self) -> str | None:
        """None when the provider can serve; otherwise why not (no API key, no model path, ...)."""
        return None

    @abstractmethod
    async def render(self, req: RenderRequest) -> RenderResult: ...

    async def edit(self, req: EditRequest) -> RenderResult:
        raise Unimplemented(f"provider {self.name} does not support edits")

    async def render_video(self, req: RenderRequest, progress: VideoProgress | None = None) -> RenderResult:
        """Text(+references) to video; `progress(operation_name, polls)` is awaited as a long job advances
        (first with the operation name, before any polling, so the caller can store it)."""
        raise Unimplemented(f"provider {self.name} does not render videos")

    async def aclose(self) -> None:
        """Release clients / models."""


def decode_image(data: bytes, what: str = "image", mode: str = "RGB") -> Image.Image:
    """Decode untrusted image bytes with Pillow (size-capped, EXIF-orientation applied) or raise InvalidInput."""
    if not data:
        raise InvalidInput(f"{what} is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > MAX_PIXELS:
                raise InvalidInput(f"{what} is too large: {im.width}x{im.height} pixels")
            im.load()
            im = ImageOps.exif_transpose(im)
            return im.convert(mode)
    except InvalidInput:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InvalidInput(f"{what} is not a decodable image: {e}") from e


def image_mime(data: bytes) -> str:
    """MIME type of encoded image bytes (by magic number)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "application/octet-stream"


def encode_png(im: Image.Image, pnginfo=None) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", pnginfo=pnginfo, compress_level=3)
    return buf.getvalue()


def pick_seed(seed: int | None) -> int:
    """The request's seed, or a fresh one (reported in the result so the render can be repeated)."""
    return seed if seed is not None else random.SystemRandom().randrange(0, 2**31)
