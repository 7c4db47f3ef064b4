"""On S3, the API's URLs are S3's own presigned URLs (fetchable without credentials), and the gateway's /objects
serves nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from gateway.errors import ApiError
from gateway.objects import Downloads, ObjectSigner, Ownership
from idlock.settings import StorageSettings
from idlock.storage import open_store


async def _yes(ident: str, user: str) -> bool:
    return True


async def test_s3_links_are_presigned_and_the_gateway_serves_none(s3_endpoint: str, data_dir: Path) -> None:
    settings = StorageSettings(
        backend="s3",
        s3_endpoint_url=s3_endpoint,
        s3_bucket=f"links-{uuid.uuid4().hex[:10]}",
        s3_create_bucket=True,
    )
    store = await open_store(settings, data_dir)
    try:
        stored = await store.put("jobs/j1/image.png", b"\x89PNG not really", "image/png")
        downloads = Downloads(store, ObjectSigner(b"k" * 32, 600), Ownership(_yes, _yes))
        url = await downloads.links("usr_a", "http://gateway.test")(stored.uri)
        assert url.startswith(s3_endpoint) and "Signature" in url
        async with httpx.AsyncClient() as anyone:
            got = await anyone.get(url)
        assert got.status_code == 200 and got.content == b"\x89PNG not really"
        assert await downloads.links("usr_a", "http://gateway.test")("file:///etc/passwd") is None
        with pytest.raises(ApiError) as err:
            await downloads.open("jobs/j1/image.png", "usr_a", 2**40, "0" * 64)
        assert err.value.status == 404
    finally:
        await store.close()
