"""Downloads of stored images and videos at signed, expiring links: the local store's files, or S3's objects read by
the gateway (with IDLOCK_GATEWAY_S3_PRESIGNED_LINKS the API's URLs are S3's own and this route answers 404)."""

from __future__ import annotations

import re
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

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
    request: Request,
    user: Annotated[str, Query(min_length=1, max_length=100, description="The user the link was made for.")],
    expires: Annotated[int, Query(ge=0, le=2**53 - 1, description="Expiry of the link (Unix time).")],
    signature: Annotated[
        str, Query(pattern=r"^[0-9a-fA-F]{64}$", description="HMAC-SHA256 of the key, user and expiry.")
    ],
) -> FileResponse:
    """An image or video from a `url` the API returned: no credentials needed, the link is signed for you and
    expires (read the resource again for a fresh one). Byte ranges are supported, for video players."""
    found = await gw.downloads.open(key, user, expires, signature)
    max_age = max(0, min(expires - int(time.time()), gw.settings.object_url_ttl_s))
    headers = {"Cache-Control": f"private, max-age={max_age}", "X-Content-Type-Options": "nosniff"}
    if isinstance(found, bytes):  # an S3 object, read by the gateway
        return ranged(found, request.headers.get("range", ""), content_type(key), headers)
    return FileResponse(found, media_type=content_type(key), headers=headers)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def ranged(data: bytes, header: str, media_type: str, headers: dict[str, str]) -> Response:
    """The object, or the one byte range asked for (206; 416 outside it); other forms get the whole object."""
    headers = {**headers, "Accept-Ranges": "bytes"}
    size = len(data)
    match = _RANGE.match(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return Response(data, media_type=media_type, headers=headers)
    first, last = match.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{size}"})
    headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(data[start : end + 1], status_code=206, media_type=media_type, headers=headers)
