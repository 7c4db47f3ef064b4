"""Signed download links: what a signature covers, when it expires, stable links for caching, and who owns an
object."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.errors import ApiError
from gateway.objects import ObjectSigner, Ownership, content_type, derive_key
from tests.clock import ManualClock

KEY = b"k" * 32


def _parts(url: str) -> tuple[str, dict[str, str]]:
    u = urlsplit(url)
    return u.path, {k: v[0] for k, v in parse_qs(u.query).items()}


def test_a_link_verifies_for_its_key_user_and_expiry_only() -> None:
    clock = ManualClock(1_000_000.0)
    signer = ObjectSigner(KEY, 600, clock=clock)
    path, q = _parts(signer.url("https://idlock.example.com/", "jobs/j1/image.png", "usr_a"))
    assert path == "/objects/jobs/j1/image.png"
    expires, sig = int(q["expires"]), q["signature"]
    assert q["user"] == "usr_a" and 1_000_600 <= expires <= 1_000_600 + signer.step_s
    signer.verify("jobs/j1/image.png", "usr_a", expires, sig)
    signer.verify("jobs/j1/image.png", "usr_a", expires, sig.upper())  # hex is case-insensitive
    for key, user, exp, s in [
        ("jobs/j2/image.png", "usr_a", expires, sig),
        ("jobs/j1/image.png", "usr_b", expires, sig),
        ("jobs/j1/image.png", "usr_a", expires + 1, sig),
        ("jobs/j1/image.png", "usr_a", expires, "0" * 64),
    ]:
        with pytest.raises(ApiError) as err:
            signer.verify(key, user, exp, s)
        assert err.value.status == 403 and "not valid" in err.value.message
    # another key signs differently
    with pytest.raises(ApiError):
        ObjectSigner(b"x" * 32, 600, clock=clock).verify("jobs/j1/image.png", "usr_a", expires, sig)


def test_a_link_expires_and_says_so() -> None:
    clock = ManualClock(1_000_000.0)
    signer = ObjectSigner(KEY, 600, clock=clock)
    s = signer.sign("jobs/j1/image.png", "usr_a")
    clock.now = s.expires + 0.5
    with pytest.raises(ApiError) as err:
        signer.verify(s.key, s.user_id, s.expires, s.signature)
    assert err.value.status == 403 and "expired" in err.value.message


def test_the_same_object_keeps_its_link_for_a_while_so_browsers_cache_it() -> None:
    clock = ManualClock(1_000_000.0)
    signer = ObjectSigner(KEY, 3600, clock=clock)
    first = signer.url("http://gw", "jobs/j1/image.png", "usr_a")
    clock.now += signer.step_s / 2 - 1
    assert signer.url("http://gw", "jobs/j1/image.png", "usr_a") == first
    clock.now += signer.step_s
    assert signer.url("http://gw", "jobs/j1/image.png", "usr_a") != first


def test_keys_and_content_types() -> None:
    assert derive_key("secret") != derive_key("secret", "other") and len(derive_key("secret")) == 32
    with pytest.raises(ValueError):
        ObjectSigner(b"short", 60)
    assert content_type("jobs/j/video.MP4") == "video/mp4"
    assert content_type("jobs/j/image.png") == "image/png"
    assert content_type("characters/c/ref_0.jpg") == "image/jpeg"
    assert content_type("jobs/j.d/blob") == "application/octet-stream"


async def test_ownership_by_folder_with_a_short_cache() -> None:
    asked: list[tuple[str, str, str]] = []

    def owns(kind: str, owner: str):
        async def check(ident: str, user: str) -> bool:
            asked.append((kind, ident, user))
            return user == owner

        return check

    clock = ManualClock(0.0)
    o = Ownership(owns("character", "usr_a"), owns("job", "usr_a"), ttl_s=30, clock=clock)
    await o.check("uploads/usr_a/pose.png", "usr_a")
    await o.check("characters/c1/ref_0.jpg", "usr_a")
    await o.check("characters/c1/ref_1.jpg", "usr_a")  # cached
    await o.check("jobs/j1/image.png", "usr_a")
    await o.check("refine/j2/edit_0.png", "usr_a")  # the refiner's output belongs to the job's owner
    assert asked == [("character", "c1", "usr_a"), ("job", "j1", "usr_a"), ("job", "j2", "usr_a")]
    for key, user in [
        ("uploads/usr_a/pose.png", "usr_b"),
        ("characters/c1/ref_0.jpg", "usr_b"),
        ("jobs/j1/image.png", "usr_b"),
        ("refine/j2/edit_0.png", "usr_b"),
        ("loras/c1/adapter.safetensors", "usr_a"),  # no user's folder: never served
        ("jobs/j1", "usr_a"),
        ("jobs/j1/image.png", ""),
    ]:
        with pytest.raises(ApiError) as err:
            await o.check(key, user)
        assert err.value.status == 404, key
    clock.now = 31
    await o.check("characters/c1/ref_0.jpg", "usr_a")  # asked again once the answer is old
    assert asked.count(("character", "c1", "usr_a")) == 2
