"""The studio: the web page people use IDLock with, served by the gateway at `/` from static files in
`gateway/studio/` (no build step, no CDN). It calls the REST API on the same origin."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("studio")
#: images and videos may come from S3's presigned URLs (another origin); scripts, styles and calls only from here
CSP = (
    "default-src 'self'; img-src 'self' data: blob: http: https:; media-src 'self' blob: http: https:; "
    "script-src 'self'; style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def install(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def studio_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)

    app.mount("/studio", StaticFiles(directory=STATIC), name="studio")
