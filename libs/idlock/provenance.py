"""The AI-generated mark inside every file IDLock makes, whatever the visible watermark setting says.

- PNG: a `tEXt` chunk `IDLock` (JSON: generator, job, provider, label) and XMP (`iTXt` `XML:com.adobe.xmp`) with
  IPTC's DigitalSourceType `trainedAlgorithmicMedia`, the field photo tools and platforms read as "made by AI".
- Video: the same JSON as a manifest box the players skip: a top-level ISO BMFF `uuid` box at the end of an MP4,
  an EBML Void element at the end of a WebM (Matroska readers skip Void wherever it is).

It is a plain declaration, not a signed C2PA manifest: anyone can strip it, and the visible mark
(`IDLOCK_RENDER_WATERMARK`) is what survives a screenshot.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from typing import Any

from PIL import Image

CHUNK_KEY = "IDLock"
XMP_KEY = "XML:com.adobe.xmp"
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
#: our own box type for the video manifest (not C2PA's)
MANIFEST_UUID = bytes.fromhex("8f3a3c5e9d0b4c1a9e2f6a7b1c0d4e21")
_MAGIC = b"IDLock-manifest\n"
_PNG = b"\x89PNG\r\n\x1a\n"
_TEXT_CHUNKS = (b"tEXt", b"iTXt", b"zTXt")
_OUR_KEYS = (CHUNK_KEY.encode(), XMP_KEY.encode(), b"Software")
_EBML_VOID = 0xEC

_XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\
<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" \
xmlns:xmp="http://ns.adobe.com/xap/1.0/" Iptc4xmpExt:DigitalSourceType="{dst}" xmp:CreatorTool="IDLock"/>\
</rdf:RDF></x:xmpmeta>"""


def manifest(*, job_id: str = "", provider: str = "", label: str = "") -> dict[str, Any]:
    return {
        "generator": "IDLock",
        "ai_generated": True,
        "digital_source_type": DIGITAL_SOURCE_TYPE,
        "job_id": job_id,
        "provider": provider,
        "label": label,
    }


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def mark_png(png: bytes, **fields: str) -> bytes:
    """The PNG with our text chunks (the `IDLock` JSON, XMP, Software) put in before IEND, replacing earlier ones;
    the image data is copied as it is, not decoded."""
    if not png.startswith(_PNG):
        raise ValueError("not a PNG")
    ours = (
        _chunk(b"tEXt", CHUNK_KEY.encode() + b"\0" + json.dumps(manifest(**fields), sort_keys=True).encode())
        + _chunk(b"iTXt", XMP_KEY.encode() + b"\0\0\0\0\0" + _XMP.format(dst=DIGITAL_SOURCE_TYPE).encode())
        + _chunk(b"tEXt", b"Software\0IDLock")
    )
    out, pos = [_PNG], len(_PNG)
    while pos + 8 <= len(png):
        (size,) = struct.unpack(">I", png[pos : pos + 4])
        kind, end = png[pos + 4 : pos + 8], pos + 12 + size
        keyword = png[pos + 8 : pos + 8 + size].split(b"\0", 1)[0]
        if kind == b"IEND":
            out.append(ours)
        if not (kind in _TEXT_CHUNKS and keyword in _OUR_KEYS):
            out.append(png[pos:end])
        pos = end
    return b"".join(out)


def mark_image(data: bytes, **fields: str) -> bytes:
    """PNG bytes of the image with the mark in its metadata: a PNG keeps its pixel data as it is, another format
    (a provider's JPEG) is converted."""
    if not data.startswith(_PNG):
        with Image.open(io.BytesIO(data)) as im:
            out = io.BytesIO()
            im.convert("RGB").save(out, "PNG", compress_level=3)
        data = out.getvalue()
    return mark_png(data, **fields)


def read_image_mark(data: bytes) -> dict[str, Any] | None:
    """The IDLock chunk of a PNG as a dict (with `xmp_digital_source_type` when XMP says it), or None."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            text = dict(getattr(im, "text", None) or {})
    except Exception:  # noqa: BLE001 - not an image we can read: no mark
        return None
    raw = text.get(CHUNK_KEY)
    if raw is None:
        return None
    try:
        mark = json.loads(raw)
    except ValueError:
        mark = {"raw": raw}
    if DIGITAL_SOURCE_TYPE in text.get(XMP_KEY, ""):
        mark["xmp_digital_source_type"] = DIGITAL_SOURCE_TYPE
    return mark


def _ebml_size(n: int) -> bytes:
    """An 8-byte EBML variable-size integer."""
    return bytes([0x01]) + n.to_bytes(7, "big")


def mark_video(data: bytes, mime: str, **fields: str) -> bytes:
    """The clip with the manifest appended as an element its readers skip (MP4: `uuid` box; WebM: Void)."""
    body = _MAGIC + json.dumps(manifest(**fields), sort_keys=True).encode()
    if mime == "video/mp4" or data[4:8] == b"ftyp":
        payload = MANIFEST_UUID + body
        return data + struct.pack(">I", 8 + len(payload)) + b"uuid" + payload
    if mime == "video/webm" or data[:4] == b"\x1a\x45\xdf\xa3":
        return data + bytes([_EBML_VOID]) + _ebml_size(len(body)) + body
    raise ValueError(f"no manifest format for {mime or 'this video'}")


def read_video_mark(data: bytes) -> dict[str, Any] | None:
    at = data.rfind(_MAGIC)
    if at < 0:
        return None
    try:
        return json.loads(data[at + len(_MAGIC) :])
    except ValueError:
        return None


__all__ = [
    "DIGITAL_SOURCE_TYPE",
    "manifest",
    "mark_image",
    "mark_png",
    "mark_video",
    "read_image_mark",
    "read_video_mark",
]
