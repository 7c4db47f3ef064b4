"""ObjectStore on a local folder and on S3 (a real moto server): the same behaviour from both."""

from __future__ import annotations

import asyncio
import hashlib
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from idlock.errors import InvalidInput, NotFound, StorageUnreachable
from idlock.natsd import free_port
from idlock.settings import StorageSettings
from idlock.storage import LocalObjectStore, ObjectStore, S3ObjectStore, open_store
from tests.metrics_probe import metrics_change


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, data_dir: Path) -> AsyncIterator[ObjectStore]:
    if request.param == "local":
        s = await open_store(StorageSettings(backend="local"), data_dir)
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        settings = StorageSettings(
            backend="s3",
            s3_endpoint_url=endpoint,
            s3_bucket=f"idlock-{uuid.uuid4().hex[:12]}",
            s3_create_bucket=True,
        )
        s = await open_store(settings, data_dir)
    yield s
    await s.close()


async def test_round_trip(store: ObjectStore) -> None:
    data = b"\x89PNG fake image bytes"
    obj = await store.put("characters/c1/refs/0.png", data, "image/png")
    assert obj.key == "characters/c1/refs/0.png"
    assert obj.sha256 == hashlib.sha256(data).hexdigest() and obj.size == len(data)
    assert obj.content_type == "image/png"
    assert obj.uri == store.uri_for(obj.key)
    assert store.key_from_uri(obj.uri) == obj.key

    assert await store.get(obj.key) == data
    assert await store.get(obj.uri) == data  # by URI too
    assert await store.exists(obj.key)
    assert not await store.exists("characters/c1/refs/1.png")

    # overwrite replaces the whole object
    await store.put(obj.key, b"v2", "image/png")
    assert await store.get(obj.key) == b"v2"


async def test_list_and_delete_prefix(store: ObjectStore) -> None:
    for k in (
        "characters/c1/a.png",
        "characters/c1/sub/b.png",
        "characters/c10/x.png",
        "characters/c2/y.png",
    ):
        await store.put(k, k.encode(), "image/png")
    assert await store.list("characters/c1/") == ["characters/c1/a.png", "characters/c1/sub/b.png"]
    # a plain string prefix, as in S3
    assert await store.list("characters/c1") == [
        "characters/c1/a.png",
        "characters/c1/sub/b.png",
        "characters/c10/x.png",
    ]
    assert len(await store.list("")) == 4
    assert await store.list("nothing/here/") == []

    assert await store.delete_prefix("characters/c1/") == 2
    assert await store.list("characters/") == ["characters/c10/x.png", "characters/c2/y.png"]
    assert await store.delete("characters/c2/y.png") is True
    assert await store.delete("characters/c2/y.png") is False
    with pytest.raises(InvalidInput, match="non-empty prefix"):
        await store.delete_prefix("")


async def test_missing_object_is_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFound, match="no/such.png"):
        await store.get("no/such.png")


@pytest.mark.parametrize(
    "bad", ["", "/abs/path.png", "a/../b.png", "../up.png", "a//b.png", "a/./b", "trailing/", "a\\b.png"]
)
async def test_bad_keys_are_refused(store: ObjectStore, bad: str) -> None:
    with pytest.raises(InvalidInput):
        await store.put(bad, b"x")
    with pytest.raises(InvalidInput):
        await store.get(bad)


async def test_foreign_and_malformed_uris_are_refused(store: ObjectStore, tmp_path: Path) -> None:
    foreign = [
        "s3://some-other-bucket/characters/c1.png",
        (tmp_path.parent / "elsewhere" / "x.png").as_uri(),
        "http://example.com/x.png",
        "s3:///no-bucket",
    ]
    for uri in foreign:
        with pytest.raises(InvalidInput) as err:
            store.key_from_uri(uri)
        assert "URI" in str(err.value)
        root = getattr(store, "root", None)  # the local store's root is a server path: never in an answer
        assert root is None or str(root) not in str(err.value)
        with pytest.raises(InvalidInput):
            await store.get(uri)


async def test_url_serves_the_object(store: ObjectStore) -> None:
    await store.put("videos/v1.mp4", b"frames", "video/mp4")
    url = await store.url("videos/v1.mp4")
    if isinstance(store, S3ObjectStore):
        assert "X-Amz-Signature" in url or "Signature=" in url

        def fetch() -> bytes:
            with urllib.request.urlopen(
                url, timeout=5
            ) as resp:  # the presigned URL works without credentials
                return resp.read()

        assert await asyncio.to_thread(fetch) == b"frames"
    else:
        assert Path(url).read_bytes() == b"frames"


async def test_local_writes_are_atomic_and_leave_no_temp_files(data_dir: Path) -> None:
    store = LocalObjectStore(data_dir / "objects")
    await store.put("a/b.bin", b"1" * 1000)
    assert await store.list("") == ["a/b.bin"]
    assert not list((data_dir / "objects" / ".idlock-tmp").iterdir())
    with pytest.raises(InvalidInput, match="reserved"):
        await store.put(".idlock-tmp/x", b"x")


async def test_s3_bucket_missing_without_create(s3_endpoint: str, data_dir: Path) -> None:
    settings = StorageSettings(
        backend="s3", s3_endpoint_url=s3_endpoint, s3_bucket=f"absent-{uuid.uuid4().hex[:8]}"
    )
    with pytest.raises(NotFound, match="IDLOCK_STORAGE_S3_CREATE_BUCKET"):
        await open_store(settings, data_dir)


async def test_s3_delete_prefix_removes_every_version(s3_endpoint: str, data_dir: Path) -> None:
    settings = StorageSettings(
        backend="s3",
        s3_endpoint_url=s3_endpoint,
        s3_bucket=f"v-{uuid.uuid4().hex[:12]}",
        s3_create_bucket=True,
    )
    store = await open_store(settings, data_dir)
    assert isinstance(store, S3ObjectStore)
    try:
        await asyncio.to_thread(
            store.client.put_bucket_versioning,
            Bucket=store.bucket,
            VersioningConfiguration={"Status": "Enabled"},
        )
        for body in (b"first", b"second", b"third"):
            await store.put("characters/c1/ref.png", body)
        await store.put("characters/c1/old.png", b"gone")
        await store.delete("characters/c1/old.png")  # leaves a delete marker over its version
        await store.put("characters/c2/ref.png", b"other")
        assert await store.delete_prefix("characters/c1/") == 2
        left = await asyncio.to_thread(store.client.list_object_versions, Bucket=store.bucket)
        keys = [v["Key"] for v in left.get("Versions", []) + left.get("DeleteMarkers", [])]
        assert keys == ["characters/c2/ref.png"]
    finally:
        await store.close()


async def test_calls_are_timed_and_failures_counted_by_reason(store: ObjectStore) -> None:
    backend = store.scheme
    with metrics_change() as grew:
        await store.put("m/a.bin", b"x" * 10)
        assert await store.get("m/a.bin") == b"x" * 10
        with pytest.raises(NotFound):
            await store.get("m/absent.bin")
    assert grew("idlock_object_store_seconds_count", backend=backend, op="put") == 1
    assert grew("idlock_object_store_seconds_count", backend=backend, op="get") == 2
    assert grew("idlock_object_store_errors_total", backend=backend) == 0  # a missing object is an answer

    import boto3
    from botocore.config import Config

    dead = S3ObjectStore(
        "nowhere",
        client=boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=1),
        ),
    )
    with metrics_change() as grew, pytest.raises(StorageUnreachable):
        await dead.put("m/a.bin", b"x")
    assert grew("idlock_object_store_errors_total", backend="s3", op="put", reason="storage_unreachable") == 1
