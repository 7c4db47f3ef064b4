"""A user's uploads (pose references for `pose_image_url`): checked, re-encoded without metadata, stored under the
user's own prefix, at most `max_uploads_per_user` of them, each deleted `upload_ttl_s` after it was stored (every
gateway sweeps; a delete is idempotent). Routers call this; the checks are in `uploads.py`."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from gateway import uploads
from gateway.errors import ApiError
from idlock.refs import upload_prefix
from idlock.storage import ObjectStore

log = logging.getLogger("idlock.gateway")
#: every user's uploads are under it
UPLOADS = "uploads/"

if TYPE_CHECKING:
    from gateway.core import Caller, Gateway


async def upload(gw: Gateway, caller: Caller, file: uploads.Upload) -> dict[str, Any]:
    """Store a cleaned image under the caller's prefix (for pose_image_url)."""
    s = gw.settings
    held = len(await gw.store.list(upload_prefix(caller.user_id)))
    if held >= s.max_uploads_per_user:
        raise ApiError(
            409,
            "quota_exceeded",
            f"you have {held} uploads stored, the limit is {s.max_uploads_per_user}; each is deleted "
            f"{s.upload_ttl_s // 3600} hours after its upload",
        )
    name = uploads.label(0, file.filename, "file")
    uploads.check_sizes(
        [(name, len(file.data))], per_file=s.max_upload_file_bytes, total=s.max_upload_total_bytes
    )
    clean = uploads.clean_image(
        file.data, name=name, max_pixels=s.max_image_pixels, jpeg_quality=s.jpeg_quality
    )
    key = f"{upload_prefix(caller.user_id)}{uuid.uuid4().hex}.{clean.extension}"
    stored = await gw.store.put(key, clean.data, clean.mime)
    return {
        "uri": stored.uri,
        "url": await gw.links(caller)(stored.uri),
        "sha256": stored.sha256,
        "mime": clean.mime,
        "width": clean.width,
        "height": clean.height,
    }


async def sweep(store: ObjectStore, ttl_s: float, *, now: float | None = None) -> int:
    """Delete every upload older than `ttl_s`; how many went."""
    cutoff = (time.time() if now is None else now) - ttl_s
    expired = [key for key, modified in await store.listing(UPLOADS) if modified < cutoff]
    for key in expired:
        await store.delete(key)
    if expired:
        log.info("%d uploads older than %.0f s deleted", len(expired), ttl_s)
    return len(expired)


async def sweep_forever(store: ObjectStore, ttl_s: float, interval_s: float) -> None:
    """Sweep every `interval_s`, the first a minute after start-up (not during it)."""
    await asyncio.sleep(min(interval_s, 60.0))
    while True:
        try:
            await sweep(store, ttl_s)
        except Exception as e:  # noqa: BLE001 - the next sweep tries again
            log.warning("sweeping expired uploads failed: %s", e)
        await asyncio.sleep(interval_s)


__all__ = ["sweep", "sweep_forever", "upload"]
