"""The visible mark (a small "IDLock" in a corner, as `IDLOCK_RENDER_WATERMARK` says) and the metadata mark every
result carries (`idlock.provenance`)."""

from __future__ import annotations

import functools
import io
import json

from PIL import Image, ImageDraw, ImageFont

from idlock.provenance import manifest, png_info
from services.render.providers.base import decode_image

CHUNK_KEY = "IDLock"
MARK_TEXT = "IDLock"


@functools.lru_cache(maxsize=32)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def draw_mark(im: Image.Image) -> Image.Image:
    """The visible mark, bottom-right, drawn on `im` (RGB) in place."""
    W, H = im.size
    size = max(8, min(W, H) // 32)
    font = _font(size)
    d = ImageDraw.Draw(im, "RGBA")
    l, t, r, b = d.textbbox((0, 0), MARK_TEXT, font=font)
    pad = max(2, size // 4)
    x = W - (r - l) - 2 * pad - max(1, W // 100)
    y = H - (b - t) - 2 * pad - max(1, H // 100)
    d.rectangle((x, y, x + (r - l) + 2 * pad, y + (b - t) + 2 * pad), fill=(0, 0, 0, 110))
    d.text((x + pad - l, y + pad - t), MARK_TEXT, font=font, fill=(255, 255, 255, 220))
    return im


def apply_watermark(
    png: bytes, *, job_id: str = "", provider: str = "", label: str = "", visible: bool = True
) -> bytes:
    """PNG bytes with the AI-generated mark in the metadata (`idlock.provenance`: the `IDLock` text chunk and
    IPTC's DigitalSourceType in XMP), always, and the visible mark (bottom-right corner) when `visible`. Other
    text chunks are kept."""
    im = decode_image(png, "image to watermark")
    if visible:
        draw_mark(im)
    buf = io.BytesIO()
    info = png_info(dict(im.info or {}), manifest(job_id=job_id, provider=provider, label=label))
    im.save(buf, "PNG", pnginfo=info, compress_level=3)
    return buf.getvalue()


def read_watermark(png: bytes) -> dict | None:
    """The IDLock chunk of a PNG as a dict, or None when absent."""
    try:
        with Image.open(io.BytesIO(png)) as im:
            raw = (getattr(im, "text", None) or {}).get(CHUNK_KEY)
    except Exception:  # noqa: BLE001
        return None
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"raw": raw}
