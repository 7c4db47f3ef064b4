"""Uploaded images: size caps, one decode with `idlock.images.decode_image`, re-encoding without any metadata.

What leaves the gateway is never the client's file: it is the decoded pixels written again as PNG (or JPEG for
JPEG uploads), so EXIF (GPS position, camera serials), ICC profiles and text chunks are dropped, and orientation
is applied to the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import ApiError, bad_request, too_large
from idlock.errors import InvalidInput
from idlock.images import decode_image, encode_jpeg, encode_png

JPEG_SOURCES = frozenset({"JPEG", "MPO"})


@dataclass(frozen=True)
class Upload:
    """A received file: what the client called it and its bytes."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    mime: str
    width: int
    height: int
    source_format: str

    @property
    def extension(self) -> str:
        return "jpg" if self.mime == "image/jpeg" else "png"


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n} bytes"


def label(index: int, filename: str, what: str = "image") -> str:
    name = f"{what} {index + 1}"
    return f"{name} ({filename})" if filename else name


def check_sizes(sizes: list[tuple[str, int]], *, per_file: int, total: int) -> None:
    """413 naming the file over the per-file cap, or the total over the request cap."""
    for i, (name, size) in enumerate(sizes):
        if size > per_file:
            raise too_large(f"{name} is {_mb(size)}, larger than the limit of {_mb(per_file)} per file")
    whole = sum(s for _, s in sizes)
    if whole > total:
        raise too_large(
            f"the uploaded files total {_mb(whole)}, more than the limit of {_mb(total)} per request"
        )


def clean_image(data: bytes, *, name: str, max_pixels: int, jpeg_quality: int = 92) -> CleanImage:
    """Decode (rejecting non-images, truncated files and bombs with a 400 naming `name`) and re-encode."""
    try:
        decoded = decode_image(data, max_pixels=max_pixels, name=name)
    except InvalidInput as exc:
        raise bad_request(
            exc.message, **({"reason": exc.details["reason"]} if "reason" in exc.details else {})
        ) from exc
    if decoded.format in JPEG_SOURCES:
        out, mime = encode_jpeg(decoded, quality=jpeg_quality), "image/jpeg"
    else:
        out, mime = encode_png(decoded), "image/png"
    return CleanImage(out, mime, decoded.width, decoded.height, decoded.format)


def check_count(n: int, *, most: int, field: str = "image") -> None:
    if n < 1:
        raise bad_request(f"{field}: at least one reference image is required (1 to {most} files)")
    if n > most:
        raise bad_request(f"{field}: at most {most} reference images are accepted, got {n}")


def check_forwardable(images: list[CleanImage], limit_bytes: int) -> None:
    """The re-encoded images go inline in one gRPC message: refuse what would not fit."""
    whole = sum(len(i.data) for i in images)
    if whole > limit_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"the re-encoded images total {_mb(whole)}, more than the {_mb(limit_bytes)} the mesh accepts in one "
            "request; send fewer or smaller images",
        )
