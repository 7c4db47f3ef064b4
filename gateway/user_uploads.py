"""A user's uploads (pose references for `pose_image_url`): checked, re-encoded without metadata, stored under the
user's own prefix. Routers call this; the checks are in `uploads.py`."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from gateway import uploads
from idlock.refs import upload_prefix

if TYPE_CHECKING:
    from gateway.core import Caller, Gateway


async def upload(gw: Gateway, caller: Caller, file: uploads.Upload) -> dict[str, Any]:
    """Store a cleaned image under the caller's prefix (for pose_image_url)."""
    s = gw.settings
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


__all__ = ["upload"]
