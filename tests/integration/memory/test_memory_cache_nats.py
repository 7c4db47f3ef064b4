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
        js = nc.jetstream()
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
