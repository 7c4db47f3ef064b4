"""Proto references <-> object storage: resolve `ImageInput`/`ImageRef`/`VideoRef` to bytes, store results as refs.

Servicers use these so large payloads travel by reference and every stored object carries its sha256.
"""

from __future__ import annotations

import hashlib

from idlock.errors import IdlockError, InvalidInput, NotFound
from idlock.storage import ObjectStore
from idlock.v1 import common_pb2


def upload_prefix(user_id: str) -> str:
    """Object keys a user owns (uploaded pose images and other inputs)."""
    return f"uploads/{user_id}/"


def pose_copy_prefix(user_id: str) -> str:
    """Where the gateway keeps its copy of a pose image fetched from a URL: one per submission, so erasing the
    job's character erases it too (an uploaded image stays the user's)."""
    return f"{upload_prefix(user_id)}pose/"


def pose_copy_key(store: ObjectStore, uri: str, owner_id: str) -> str:
    """The key behind `uri` when it is the owner's per-submission pose copy, "" for anything else."""
    if not uri:
        return ""
    try:
        key = store.key_from_uri(uri)
    except IdlockError:
        return ""
    return key if key.startswith(pose_copy_prefix(owner_id)) else ""


def video_suffix(data: bytes) -> str:
    """A clip's file suffix from its container's first bytes (OpenCV's reader also goes by the file name)."""
    if data[4:8] == b"ftyp":
        return ".mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return ".webm"
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return ".avi"
    return ".bin"


async def fetch_ref(store: ObjectStore, ref: common_pb2.ImageRef | common_pb2.VideoRef, name: str) -> bytes:
    """Bytes behind a reference; a sha256 given in the reference must match what is stored."""
    if not ref.uri:
        raise InvalidInput(f"{name} has no uri")
    try:
        data = await store.get(ref.uri)
    except NotFound as e:  # which of the request's inputs is gone, not only which object
        raise NotFound(f"{name}: {e.message}", details=e.details) from e
    if ref.sha256 and hashlib.sha256(data).hexdigest() != ref.sha256.lower():
        raise InvalidInput(f"{name}: stored object {ref.uri} does not match the sha256 in the reference")
    return data


async def image_bytes(store: ObjectStore, image: common_pb2.ImageInput, name: str = "image") -> bytes:
    """Bytes of an `ImageInput` given inline or by reference."""
    source = image.WhichOneof("source")
    if source == "data":
        if not image.data:
            raise InvalidInput(f"{name} is empty (0 bytes)")
        return image.data
    if source == "ref":
        return await fetch_ref(store, image.ref, name)
    raise InvalidInput(f"{name} is missing: give either data or ref")


async def put_image(
    store: ObjectStore, key: str, data: bytes, *, width: int, height: int, mime: str = "image/png"
) -> common_pb2.ImageRef:
    stored = await store.put(key, data, mime)
    return common_pb2.ImageRef(uri=stored.uri, sha256=stored.sha256, mime=mime, width=width, height=height)


async def put_video(
    store: ObjectStore,
    key: str,
    data: bytes,
    *,
    width: int,
    height: int,
    duration_s: float,
    fps: float,
    mime: str = "video/mp4",
) -> common_pb2.VideoRef:
    stored = await store.put(key, data, mime)
    return common_pb2.VideoRef(
        uri=stored.uri,
        sha256=stored.sha256,
        mime=mime,
        width=width,
        height=height,
        duration_s=duration_s,
        fps=fps,
    )
