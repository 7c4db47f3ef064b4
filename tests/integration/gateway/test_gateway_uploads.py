"""A user's uploads: a quota per user (409 `quota_exceeded` naming the limit), and expiry (every gateway sweeps
uploads older than the TTL; fresh ones and other folders stay), on the local store and on S3 (moto)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from gateway.user_uploads import sweep
from idlock.settings import StorageSettings
from idlock.storage import open_store
from tests.integration.gateway.test_gateway_api import Mesh, assert_error, jpeg_with_exif, running


async def test_uploads_have_a_quota_per_user(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path, max_uploads_per_user=2) as api:
        alice, bob = await api.user("alice@example.com"), await api.user("bob@example.com")
        for i in range(2):
            r = await api.client.post(
                "/api/v1/uploads", files=[("file", ("p.jpg", jpeg_with_exif(i), "image/jpeg"))], headers=alice
            )
            assert r.status_code == 201, r.text
        third = await api.client.post(
            "/api/v1/uploads", files=[("file", ("p.jpg", jpeg_with_exif(3), "image/jpeg"))], headers=alice
        )
        assert_error(third, 409, "quota_exceeded", "limit is 2")
        other = await api.client.post(
            "/api/v1/uploads", files=[("file", ("p.jpg", jpeg_with_exif(4), "image/jpeg"))], headers=bob
        )
        assert other.status_code == 201  # the quota is per user


@pytest.mark.parametrize("backend", ["local", "s3"])
async def test_expired_uploads_are_swept(
    backend: str, request: pytest.FixtureRequest, data_dir: Path
) -> None:
    if backend == "s3":
        settings = StorageSettings(
            backend="s3",
            s3_endpoint_url=request.getfixturevalue("s3_endpoint"),
            s3_bucket=f"up-{uuid.uuid4().hex[:10]}",
            s3_create_bucket=True,
        )
    else:
        settings = StorageSettings(backend="local")
    store = await open_store(settings, data_dir)
    try:
        for key in ("uploads/u1/a.png", "uploads/u2/pose/b.png", "characters/c1/ref_0.png"):
            await store.put(key, b"x")
        stamps = dict(await store.listing(""))
        assert set(stamps) == {"uploads/u1/a.png", "uploads/u2/pose/b.png", "characters/c1/ref_0.png"}
        assert all(abs(t - time.time()) < 120 for t in stamps.values())
        assert await sweep(store, 3600) == 0  # nothing is an hour old yet
        assert await sweep(store, 3600, now=time.time() + 7200) == 2  # two hours on: both uploads, only them
        assert await store.list("") == ["characters/c1/ref_0.png"]
    finally:
        await store.close()
