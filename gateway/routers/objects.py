"""Downloads of the local object store's images and videos at signed, expiring links (on S3, the API's URLs are
S3's own presigned URLs and this route answers 404)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse

from gateway.deps import GatewayDep
from gateway.objects import content_type
from gateway.schemas import ErrorBody

router = APIRouter(
    tags=["objects"],
    responses={400: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}},
)

MEDIA = {"image/png": {}, "image/jpeg": {}, "image/webp": {}, "video/mp4": {}, "video/webm": {}}


@router.get(
    "/objects/{key:path}",
    operation_id="download_object",
    response_class=FileResponse,
    responses={
        200: {"content": MEDIA, "description": "The object (Range requests are answered with 206)."},
        206: {"content": MEDIA, "description": "The requested byte range of the object."},
        416: {"description": "The requested range is outside the object."},
        423: {"model": ErrorBody, "description": "Its character is frozen while a report is reviewed."},
    },
)
async def download_object(
    key: str,
    gw: GatewayDep,
    user: Annotated[str, Query(min_length=1, max_length=100, description="The user the link was made for.")],
    expires: Annotated[int, Query(ge=0, le=2**53 - 1, description="Expiry of the link (Unix time).")],
    signature: Annotated[
        str, Query(pattern=r"^[0-9a-fA-F]{64}$", description="HMAC-SHA256 of the key, user and expiry.")
    ],
) -> FileResponse:
    """An image or video from a `url` the API returned: no credentials needed, the link is signed for you and
    expires (read the resource again for a fresh one). Byte ranges are supported, for video players."""
    path = await gw.downloads.open(key, user, expires, signature)
    max_age = max(0, min(expires - int(time.time()), gw.settings.object_url_ttl_s))
    return FileResponse(
        path,
        media_type=content_type(key),
        headers={"Cache-Control": f"private, max-age={max_age}", "X-Content-Type-Options": "nosniff"},
    )
