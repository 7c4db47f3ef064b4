"""The visible mark (a small "IDLock" in a corner, as `IDLOCK_RENDER_WATERMARK` says) and the metadata mark every
result carries (`idlock.provenance`)."""

from __future__ import annotations

import functools
import io

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from idlock.provenance import mark_image, mark_png
from services.render.providers.base import decode_image

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
    """PNG bytes with the AI-generated mark in the metadata (`idlock.provenance`), always, and the visible mark
    (bottom-right corner) when `visible`. Other text chunks are kept; without the visible mark the pixels are not
    decoded at all."""
    fields = {"job_id": job_id, "provider": provider, "label": label}
    if not visible:
        return mark_image(png, **fields)
    im = draw_mark(decode_image(png, "image to watermark"))
    kept = PngInfo()
    for k, v in (im.info or {}).items():
        if isinstance(v, str):
            kept.add_text(k, v)
    buf = io.BytesIO()
    im.save(buf, "PNG", pnginfo=kept, compress_level=3)
    return mark_png(buf.getvalue(), **fields)
