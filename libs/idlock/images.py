"""Decode untrusted image bytes once, into an RGB uint8 array, with clear `InvalidInput` errors.

Every service that accepts an image calls `decode_image` (or `load_image` for a path) exactly once and passes
the resulting `DecodedImage` (or its `pixels`) on. Handled here, so nobody downstream has to:

- empty input, data that is not an image, formats we do not accept, truncated or corrupt files;
- decompression bombs: the pixel count is checked from the header *before* any pixel is decoded, against our own
  limit (`max_pixels`); Pillow's own DecompressionBombError/Warning are caught and reported the same way;
- EXIF orientation (the array is upright), palette/transparency (RGBA composited on white, or alpha dropped),
  grayscale, bilevel, CMYK, 16-bit and 32-bit integer/float modes (scaled down to 8 bits).

`encode_png` / `encode_jpeg` write arrays back without any metadata (no EXIF, no ICC, no text chunks).
"""

from __future__ import annotations

import io
import re
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from idlock.errors import InvalidInput

#: Formats accepted by default (Pillow format names).
SUPPORTED_FORMATS: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "MPO"})
#: Default pixel limit (width x height) above which an image is refused as a decompression bomb.
DEFAULT_MAX_PIXELS = 50_000_000

AlphaMode = Literal["white", "drop"]


@dataclass(frozen=True)
class DecodedImage:
    """An upright RGB uint8 image (H x W x 3) and what we learnt about the file it came from."""

    pixels: np.ndarray
    format: str
    #: (width, height) as stored in the file, before EXIF orientation was applied
    original_size: tuple[int, int]
    #: Pillow mode of the file ("RGB", "L", "RGBA", "P", "I;16", ...)
    original_mode: str
    #: EXIF orientation tag (1 = upright; 0 when absent)
    exif_orientation: int
    had_alpha: bool

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height


_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _sniff(data: bytes) -> str | None:
    """Format named by the file's magic bytes (used to tell a truncated image from data that is no image)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, fmt in _SIGNATURES:
        if data.startswith(magic):
            return fmt
    return None


def _header_size(data: bytes, fmt: str | None) -> tuple[int, int] | None:
    """(width, height) read straight from a PNG/GIF/BMP header (Pillow refuses some 0-size headers as corrupt)."""
    try:
        if fmt == "PNG" and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if fmt == "GIF":
            return struct.unpack("<HH", data[6:10])
        if fmt == "BMP":
            w, h = struct.unpack("<ii", data[18:26])
            return w, abs(h)
    except struct.error:
        return None
    return None


def _describe(data: bytes) -> str:
    head = data[:8]
    return f"{len(data)} bytes starting with {head!r}"


def _to_rgb_array(img: Image.Image, alpha: AlphaMode) -> tuple[np.ndarray, bool]:
    """Convert any Pillow mode to an RGB uint8 array. Returns (array, had_alpha)."""
    mode = img.mode
    had_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if mode == "RGB":
        return np.asarray(img, dtype=np.uint8).copy(), False
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float64)
            top = float(np.nanmax(arr)) if arr.size else 0.0
            arr = np.nan_to_num(arr)
            arr = arr * 255.0 if top <= 1.0 else arr
            arr8 = np.clip(arr, 0, 255).round().astype(np.uint8)
        else:
            arr = arr.astype(np.int64)
            # 16-bit data (also 16-bit PNGs that Pillow opens as mode "I"): keep the high byte
            arr8 = (
                (np.clip(arr, 0, 65535) >> 8).astype(np.uint8)
                if arr.max(initial=0) > 255
                else np.clip(arr, 0, 255).astype(np.uint8)
            )
        return np.repeat(arr8[:, :, None], 3, axis=2), False
    if had_alpha:
        rgba = img.convert("RGBA")
        if alpha == "drop":
            return np.asarray(rgba.convert("RGB"), dtype=np.uint8).copy(), True
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        canvas.alpha_composite(rgba)
        return np.asarray(canvas.convert("RGB"), dtype=np.uint8).copy(), True
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy(), False


_STRICT_LOAD = threading.Lock()


def _load_strict(img: Image.Image) -> None:
    """Load pixels refusing truncated data even when another library (face_recognition does) has switched
    Pillow's process-wide LOAD_TRUNCATED_IMAGES on."""
    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        img.load()
        return
    with _STRICT_LOAD:
        saved, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
        try:
            img.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


def decode_image(
    data: bytes | bytearray | memoryview,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    formats: frozenset[str] | None = None,
    alpha: AlphaMode = "white",
    name: str = "image",
) -> DecodedImage:
    """Decode `data` into an upright RGB uint8 array, or raise `InvalidInput` saying what is wrong.

    `name` is used in the messages ("reference 2", "scene image") so the caller sees which input failed.
    """
    formats = SUPPORTED_FORMATS if formats is None else formats
    if data is None:
        raise InvalidInput(f"{name} is empty: no data was given")
    data = bytes(data)
    if len(data) == 0:
        raise InvalidInput(f"{name} is empty (0 bytes)")
    claimed = _header_size(data, _sniff(data))
    if claimed is not None and (claimed[0] <= 0 or claimed[1] <= 0):
        raise InvalidInput(
            f"{name} has zero size ({claimed[0]}x{claimed[1]} pixels)", details={"reason": "zero_size"}
        )
    with warnings.catch_warnings():
        # Pillow warns between MAX_IMAGE_PIXELS and 2x; we enforce our own limit below instead.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            # Pillow's own hard limit (2 x MAX_IMAGE_PIXELS) triggered before ours could look at the size
            found = re.search(r"\((\d+) pixels\)", str(exc))
            claimed_px = found.group(1) if found else "too many"
            raise InvalidInput(
                f"{name} is a decompression bomb: {claimed_px} pixels exceeds the limit of {max_pixels} pixels",
                details={"reason": "decompression_bomb", "max_pixels": max_pixels},
            ) from exc
        except UnidentifiedImageError as exc:
            sniffed = _sniff(data)
            if sniffed is not None:
                raise InvalidInput(
                    f"{name} is truncated or corrupt: it starts like a {sniffed} file but its header cannot be "
                    f"read ({len(data)} bytes)",
                    details={"reason": "truncated", "format": sniffed},
                ) from exc
            raise InvalidInput(
                f"{name} is not an image (unrecognised data: {_describe(data)})",
                details={"reason": "not_an_image"},
            ) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise InvalidInput(
                f"{name} is corrupt or truncated: the header cannot be read ({exc})",
                details={"reason": "truncated"},
            ) from exc
        fmt = (img.format or "").upper()
        if fmt not in formats:
            raise InvalidInput(
                f"{name} has unsupported format {fmt or 'unknown'}; supported: {', '.join(sorted(formats))}",
                details={"reason": "unsupported_format", "format": fmt},
            )
        width, height = img.size
        if width <= 0 or height <= 0:
            raise InvalidInput(
                f"{name} has zero size ({width}x{height} pixels)", details={"reason": "zero_size"}
            )
        if width * height > max_pixels:
            raise InvalidInput(
                f"{name} is a decompression bomb: {width}x{height} = {width * height} pixels exceeds the limit "
                f"of {max_pixels} pixels",
                details={"reason": "decompression_bomb", "max_pixels": max_pixels, "pixels": width * height},
            )
        mode = img.mode
        try:
            _load_strict(img)
        except Image.DecompressionBombError as exc:  # pragma: no cover - size is checked above
            raise InvalidInput(f"{name} is a decompression bomb: {exc}") from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise InvalidInput(
                f"{name} is truncated or corrupt: pixel data cannot be decoded ({fmt}: {exc})",
                details={"reason": "truncated", "format": fmt},
            ) from exc
        orientation = 0
        try:
            orientation = int(img.getexif().get(0x0112, 0) or 0)
        except Exception:  # noqa: BLE001 - a broken EXIF block must not fail the image
            orientation = 0
        if orientation not in (0, 1):
            try:
                img = ImageOps.exif_transpose(img)
            except Exception as exc:
                raise InvalidInput(f"{name} has an unreadable EXIF orientation ({exc})") from exc
        pixels, had_alpha = _to_rgb_array(img, alpha)
    return DecodedImage(
        pixels=pixels,
        format=fmt,
        original_size=(int(width), int(height)),
        original_mode=mode,
        exif_orientation=orientation,
        had_alpha=had_alpha,
    )


def load_image(path: str | Path, **kwargs) -> DecodedImage:
    """Read a file and `decode_image` it; a missing file is `InvalidInput` too (the path came from a caller)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read image file {p}: {exc.strerror or exc}") from exc
    kwargs.setdefault("name", f"image {p.name}")
    return decode_image(data, **kwargs)


def as_rgb(image: DecodedImage | np.ndarray) -> np.ndarray:
    """Accept a DecodedImage or an array (H x W x 3 RGB uint8, or H x W gray) and return the RGB array."""
    if isinstance(image, DecodedImage):
        return image.pixels
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InvalidInput(f"expected an H x W x 3 RGB array, got shape {arr.shape}")
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return arr


def _check_array(pixels: np.ndarray) -> Image.Image:
    arr = as_rgb(pixels) if not (isinstance(pixels, np.ndarray) and pixels.ndim == 2) else pixels
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr))


def encode_png(pixels: np.ndarray | DecodedImage, *, compress_level: int = 6) -> bytes:
    """PNG bytes of an RGB (or gray) uint8 array, with no metadata chunks."""
    img = _check_array(pixels.pixels if isinstance(pixels, DecodedImage) else pixels)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def encode_jpeg(pixels: np.ndarray | DecodedImage, *, quality: int = 92) -> bytes:
    """JPEG bytes of an RGB (or gray) uint8 array, with no EXIF/ICC."""
    img = _check_array(pixels.pixels if isinstance(pixels, DecodedImage) else pixels)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality), optimize=False)
    return buf.getvalue()
