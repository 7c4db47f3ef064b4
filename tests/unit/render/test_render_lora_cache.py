"""The render replica's LoRA cache (`services/render/lora_cache.py`): a file per content hash, kept while one of
the stored objects it came from exists, deleted (its adapter unloaded first) once none does."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from idlock.errors import InvalidInput, NotFound, Unavailable
from idlock.settings import StorageSettings
from idlock.storage import open_store
from idlock.v1 import common_pb2
from services.render.lora_cache import LoraCache


async def _stored(store, key: str, data: bytes) -> common_pb2.LoraRef:
    obj = await store.put(key, data)
    return common_pb2.LoraRef(lora_id=key, uri=obj.uri, sha256=obj.sha256)


async def test_a_cached_lora_lives_as_long_as_one_of_its_stored_objects(tmp_path) -> None:
    store = await open_store(StorageSettings(), tmp_path / "objects")
    forgotten: list[str] = []

    async def forget(path: str) -> None:
        forgotten.append(path)

    cache = LoraCache(store, tmp_path / "cache", forget)
    a = await _stored(store, "loras/c1/v1/w.safetensors", b"weights one")
    same = await _stored(store, "loras/c1/v1-copy/w.safetensors", b"weights one")
    b = await _stored(store, "loras/c2/v1/w.safetensors", b"weights two")

    path_a = await cache.path(a)
    assert await cache.path(same) == path_a  # one file per content
    path_b = await cache.path(b)
    assert Path(path_a).read_bytes() == b"weights one" and path_a != path_b
    assert path_a.endswith(hashlib.sha256(b"weights one").hexdigest() + ".safetensors")

    assert await cache.sweep() == [] and not forgotten  # every source there
    await store.delete(a.uri)
    assert await cache.sweep() == []  # its copy's object is still there
    await store.delete(same.uri)
    assert await cache.sweep() == [hashlib.sha256(b"weights one").hexdigest()]
    assert forgotten == [path_a]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [f"{hashlib.sha256(b'weights two').hexdigest()}{ext}" for ext in (".safetensors", ".sources")]
    )
    # fetched again after a sweep: written again
    again = await _stored(store, "loras/c1/v2/w.safetensors", b"weights one")
    assert await cache.path(again) == path_a and Path(path_a).read_bytes() == b"weights one"


async def test_a_file_of_unknown_source_goes_and_an_unreachable_store_keeps_files(tmp_path) -> None:
    store = await open_store(StorageSettings(), tmp_path / "objects")
    cache = LoraCache(store, tmp_path / "cache")
    kept = await cache.path(await _stored(store, "loras/c1/v1/w.safetensors", b"weights"))
    (tmp_path / "cache" / "0123.safetensors").write_bytes(b"left by an older release")
    assert await cache.sweep() == ["0123"]

    async def unreachable(key: str) -> bool:
        raise Unavailable("object storage unreachable")

    store._exists = unreachable  # the sweep cannot tell: the file stays for the next one
    assert await cache.sweep() == []
    assert Path(kept).read_bytes() == b"weights"


async def test_a_cached_lora_is_not_downloaded_again_but_an_erased_one_is_not_used(tmp_path) -> None:
    store = await open_store(StorageSettings(), tmp_path / "objects")
    cache = LoraCache(store, tmp_path / "cache")
    lora = await _stored(store, "loras/c1/v1/w.safetensors", b"weights")
    fetched: list[str] = []
    get = store._get

    async def counted(key: str) -> bytes:
        fetched.append(key)
        return await get(key)

    store._get = counted
    first = await cache.path(lora)
    assert await cache.path(lora) == first and len(fetched) == 1  # the second only asks whether it exists
    stale = common_pb2.LoraRef(lora_id="x", uri=lora.uri, sha256="0" * 64)  # not cached under that hash
    with pytest.raises(InvalidInput, match="does not match the sha256"):
        await cache.path(stale)
    assert len(fetched) == 2
    await store.delete(lora.uri)
    with pytest.raises(NotFound):
        await cache.path(lora)
