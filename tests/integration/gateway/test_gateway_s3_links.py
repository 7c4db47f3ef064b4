"""On S3 the gateway serves objects at its own signed links by default, so a freeze or a lost ownership applies to
links already handed out; byte ranges work for video players. With IDLOCK_GATEWAY_S3_PRESIGNED_LINKS the API's
URLs are S3's own presigned URLs (fetchable without credentials) and the gateway's /objects serves nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from gateway.errors import ApiError
from gateway.objects import Downloads, ObjectSigner, Ownership
from gateway.routers.objects import ranged
from idlock.settings import StorageSettings
from idlock.storage import open_store

BODY = b"\x89PNG not really, but bytes enough"


async def _yes(ident: str, user: str) -> bool:
    return True


async def _mine(ident: str, user: str) -> bool:
    return user == "usr_a"


@pytest.fixture
async def store(s3_endpoint: str, data_dir: Path):
    settings = StorageSettings(
        backend="s3",
        s3_endpoint_url=s3_endpoint,
        s3_bucket=f"links-{uuid.uuid4().hex[:10]}",
        s3_create_bucket=True,
    )
    store = await open_store(settings, data_dir)
    try:
        yield store
    finally:
        await store.close()


def _query(url: str) -> tuple[str, str, int, str]:
    parsed = httpx.URL(url)
    key = parsed.path.removeprefix("/objects/")
    q = parsed.params
    return key, q["user"], int(q["expires"]), q["signature"]


async def test_s3_objects_are_served_by_the_gateway_with_every_check(store) -> None:
    stored = await store.put("jobs/j1/image.png", BODY, "image/png")
    frozen: set[str] = set()

    async def frozen_object(key: str) -> str:
        return "char_1" if key in frozen else ""

    downloads = Downloads(store, ObjectSigner(b"k" * 32, 600), Ownership(_mine, _mine), frozen_object)
    url = await downloads.links("usr_a", "http://gateway.test")(stored.uri)
    assert url.startswith("http://gateway.test/objects/jobs/j1/image.png?")
    assert await downloads.open(*_query(url)) == BODY
    # the same link, once its character is frozen: refused, though S3 would still hand the object out
    frozen.add("jobs/j1/image.png")
    with pytest.raises(ApiError) as err:
        await downloads.open(*_query(url))
    assert err.value.status == 423
    # another user's link to it: not theirs
    other = await downloads.links("usr_b", "http://gateway.test")(stored.uri)
    frozen.clear()
    with pytest.raises(ApiError) as err:
        await downloads.open(*_query(other))
    assert err.value.status == 404
    await store.delete("jobs/j1/image.png")
    with pytest.raises(ApiError) as err:
        await downloads.open(*_query(url))
    assert err.value.status == 404


def test_byte_ranges_of_an_object_read_by_the_gateway() -> None:
    whole = ranged(BODY, "", "image/png", {})
    assert whole.status_code == 200 and whole.body == BODY and whole.headers["accept-ranges"] == "bytes"
    part = ranged(BODY, "bytes=4-9", "image/png", {})
    assert part.status_code == 206 and part.body == BODY[4:10]
    assert part.headers["content-range"] == f"bytes 4-9/{len(BODY)}"
    tail = ranged(BODY, "bytes=-5", "image/png", {})
    assert tail.status_code == 206 and tail.body == BODY[-5:]
    open_ended = ranged(BODY, "bytes=30-", "image/png", {})
    assert open_ended.body == BODY[30:]
    outside = ranged(BODY, f"bytes={len(BODY)}-", "image/png", {})
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{len(BODY)}"


async def test_presigned_links_when_set_and_the_gateway_serves_none(store, s3_endpoint: str) -> None:
    stored = await store.put("jobs/j1/image.png", BODY, "image/png")
    downloads = Downloads(store, ObjectSigner(b"k" * 32, 600), Ownership(_yes, _yes), presigned=True)
    url = await downloads.links("usr_a", "http://gateway.test")(stored.uri)
    assert url.startswith(s3_endpoint) and "Signature" in url
    async with httpx.AsyncClient() as anyone:
        got = await anyone.get(url)
    assert got.status_code == 200 and got.content == BODY
    assert await downloads.links("usr_a", "http://gateway.test")("file:///etc/passwd") is None
    with pytest.raises(ApiError) as err:
        await downloads.open("jobs/j1/image.png", "usr_a", 2**40, "0" * 64)
    assert err.value.status == 404
