"""Prompt cache: in-memory and over a NATS KV bucket on a real nats-server (the session's `nats_server`)."""

import asyncio

import pytest

from services.memory.cache import CacheKey, InMemoryPromptCache, NatsKvPromptCache, character_token
from services.memory.prompt import ComposedPrompt


@pytest.fixture(scope="module")
def nats_url(nats_server):
    return nats_server.url


def key(cid="char-1", v=1, p="p" * 64):
    return CacheKey(cid, v, p, "o", "template")


VALUE = ComposedPrompt(
    prompt="P", negative_prompt="N", engine="llm", sections={"USER_SCENE": "x"}, template_hash="t"
)


def test_keys_are_valid_kv_keys():
    import re

    for cid in ("char-1", "a.b c/√", "550e8400-e29b-41d4-a716-446655440000"):
        k = key(cid).storage_key()
        assert re.fullmatch(r"[-/_=.a-zA-Z0-9]+", k) and not k.startswith(".") and not k.endswith(".")
        assert k.count(".") == 1 and k.startswith(character_token(cid) + ".")
    assert key(v=1).storage_key() != key(v=2).storage_key()


async def test_in_memory_cache():
    c = InMemoryPromptCache()
    assert await c.get(key()) is None
    await c.put(key(), VALUE)
    hit = await c.get(key())
    assert hit.cache_hit and hit.prompt == "P" and hit.sections == {"USER_SCENE": "x"}
    await c.put(key(cid="other"), VALUE)
    assert await c.delete_for_character("char-1") == 1
    assert await c.get(key()) is None and await c.get(key(cid="other")) is not None


async def test_nats_kv_cache(nats_url):
    import nats

    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream(timeout=30)  # stream creation on a cold disk can take seconds
        cache = await NatsKvPromptCache.open(js, "test_prompt_cache")
        again = await NatsKvPromptCache.open(js, "test_prompt_cache")  # opening twice reuses the bucket
        with_ttl = await NatsKvPromptCache.open(js, "test_prompt_cache_ttl", ttl_s=60)
        assert (await with_ttl._kv.status()).ttl == 60
        assert await cache.get(key()) is None
        await cache.put(key(), VALUE)
        await cache.put(key(v=2), VALUE)
        await cache.put(key(cid="char-10"), VALUE)  # prefix of no other: char-1 must not catch char-10
        await cache.put(key(cid="weird id/é"), VALUE)
        hit = await again.get(key())
        assert hit is not None and hit.cache_hit and hit.engine == "llm" and hit.prompt == "P"
        assert await cache.delete_for_character("char-1") == 2
        assert await cache.get(key()) is None and await cache.get(key(v=2)) is None
        assert (await cache.get(key(cid="char-10"))) is not None
        assert await cache.delete_for_character("weird id/é") == 1
        assert await cache.delete_for_character("nobody") == 0
        assert await cache.delete_for_character("char-1") == 0
        await cache.put(key(), VALUE)  # usable again after erasure
        assert await cache.get(key()) is not None
    finally:
        await asyncio.wait_for(nc.close(), 5)


def _files_holding(root, needle: bytes) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes())


async def test_erased_entries_leave_no_bytes_in_the_stream_files(nats_server):
    """A purge alone drops a KV entry from the stream's index and leaves its bytes in the block files; the
    erasure overwrites them."""
    import nats

    secret = "Arya hides the silver dagger under the mill"
    value = ComposedPrompt(
        prompt=secret, negative_prompt="N", engine="llm", sections={"USER_SCENE": secret}, template_hash="t"
    )
    nc = await nats.connect(nats_server.url)
    try:
        cache = await NatsKvPromptCache.open(nc.jetstream(timeout=30), "test_prompt_cache_erase")
        await cache.put(key(cid="erased-1"), value)
        await cache.put(key(cid="erased-1"), value)  # a second write of the key leaves no second copy
        await cache.put(key(cid="erased-1", v=2), value)
        await cache.put(key(cid="kept-1"), VALUE)
        await nc.flush()
        assert _files_holding(nats_server.store_dir, secret.encode())  # the scan sees stored entries
        assert await cache.delete_for_character("erased-1") == 2
        await nc.flush()
        assert _files_holding(nats_server.store_dir, secret.encode()) == []
        assert await cache.get(key(cid="kept-1")) is not None
    finally:
        await asyncio.wait_for(nc.close(), 5)


async def test_a_bucket_that_denies_deletes_is_made_again(nats_server):
    import nats

    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream(timeout=30)  # stream creation on a cold disk can take seconds
        old = await js.create_key_value(
            bucket="test_prompt_cache_old", history=1
        )  # as an earlier release did
        await old.put("char-1.x", b"{}")
        cache = await NatsKvPromptCache.open(js, "test_prompt_cache_old")
        assert not (await js.stream_info("KV_test_prompt_cache_old")).config.deny_delete
        await cache.put(key(), VALUE)
        assert await cache.delete_for_character("char-1") == 1
    finally:
        await asyncio.wait_for(nc.close(), 5)
