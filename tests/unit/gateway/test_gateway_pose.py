"""pose_image_url rules: storage refs under the caller's uploads, public https only, re-checked at fetch time.

DNS goes through a fake resolver and HTTP through httpx.MockTransport: no real network.
"""

from __future__ import annotations

import httpx
import pytest

from gateway import pose
from idlock.errors import InvalidInput

USER = "usr_alice"
BUCKET = "idlock"


def key_from_uri(uri: str) -> str:
    prefix = f"s3://{BUCKET}/"
    if not uri.startswith(prefix):
        raise InvalidInput(f"URI {uri!r} is not an s3:// URI of bucket {BUCKET!r}")
    key = uri[len(prefix) :]
    if any(p in ("", ".", "..") for p in key.split("/")):
        raise InvalidInput(f"object key {key!r} has an empty, '.' or '..' part")
    return key


def resolver_for(table: dict[str, list[str]]):
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in table:
            raise InvalidInput(f"pose_image_url: host {host!r} cannot be resolved")
        return list(table[host])

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


PUBLIC = resolver_for({"img.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})


# ---- classification ----------------------------------------------------------------------------------------


def test_storage_ref_under_own_uploads_is_accepted() -> None:
    src = pose.classify(f"s3://{BUCKET}/uploads/{USER}/pose.png", user_id=USER, key_from_uri=key_from_uri)
    assert src.kind == "storage" and src.key == f"uploads/{USER}/pose.png"


@pytest.mark.parametrize(
    "uri",
    [
        f"s3://{BUCKET}/uploads/usr_bob/pose.png",  # someone else's upload
        f"s3://{BUCKET}/characters/c1/refs/0.png",  # outside uploads
        f"s3://{BUCKET}/uploads/{USER}x/pose.png",  # prefix trick
        f"s3://{BUCKET}/uploads/{USER}/../usr_bob/p.png",  # traversal
        "s3://other-bucket/uploads/usr_alice/p.png",  # not our store
    ],
)
def test_storage_ref_outside_own_prefix_is_refused(uri: str) -> None:
    with pytest.raises(InvalidInput, match="pose_image_url"):
        pose.classify(uri, user_id=USER, key_from_uri=key_from_uri)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://img.example.com/p.png", "https"),
        ("ftp://img.example.com/p.png", "https"),
        ("https://user:pw@img.example.com/p.png", "user name or password"),
        ("https://img.example.com:8443/p.png", "port 443"),
        ("https:///p.png", "no host"),
        ("", "empty"),
        ("https://img.example.com/a b.png", "spaces"),
        ("https://img.example.com/" + "a" * 3000, "longer"),
    ],
)
def test_bad_urls_are_refused_with_a_reason(url: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        pose.classify(url, user_id=USER, key_from_uri=key_from_uri)


# ---- address checks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a public"),  # carrier-grade NAT
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "embeds"),
        ("::ffff:10.0.0.1", "embeds"),
        ("64:ff9b::a9fe:a9fe", "embeds"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "embeds"),  # 6to4 of 127.0.0.1
    ],
)
def test_non_public_addresses_are_named(address: str, label: str) -> None:
    problem = pose.address_problem(address)
    assert problem is not None and label in problem


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert pose.address_problem(address) is None


async def test_https_url_with_only_public_addresses_is_accepted() -> None:
    src = await pose.validate(
        "https://img.example.com/p.png", user_id=USER, key_from_uri=key_from_uri, resolver=PUBLIC
    )
    assert src.kind == "https" and src.host == "img.example.com"


async def test_every_resolved_address_is_checked() -> None:
    mixed = resolver_for({"mixed.example.com": ["93.184.216.34", "10.0.0.5"]})
    with pytest.raises(InvalidInput, match="non-public address .*10.0.0.5 is a private"):
        await pose.validate(
            "https://mixed.example.com/p.png", user_id=USER, key_from_uri=key_from_uri, resolver=mixed
        )


@pytest.mark.parametrize(
    "url", ["https://127.0.0.1/p.png", "https://[::1]/p.png", "https://169.254.169.254/latest/meta-data"]
)
async def test_ip_literals_are_checked_without_dns(url: str) -> None:
    resolve = resolver_for({})
    with pytest.raises(InvalidInput, match="non-public"):
        await pose.validate(url, user_id=USER, key_from_uri=key_from_uri, resolver=resolve)
    assert resolve.calls == []


async def test_unresolvable_and_empty_answers_are_refused() -> None:
    resolve = resolver_for({"empty.example.com": []})
    with pytest.raises(InvalidInput, match="cannot be resolved"):
        await pose.validate(
            "https://nope.example.com/p.png", user_id=USER, key_from_uri=key_from_uri, resolver=resolve
        )
    with pytest.raises(InvalidInput, match="no address"):
        await pose.validate(
            "https://empty.example.com/p", user_id=USER, key_from_uri=key_from_uri, resolver=resolve
        )


# ---- fetching ----------------------------------------------------------------------------------------------


def _transport(handler):
    seen: list[httpx.Request] = []

    def wrapped(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return httpx.MockTransport(wrapped), seen


async def test_fetch_connects_to_the_checked_address_with_the_original_host() -> None:
    transport, seen = _transport(
        lambda r: httpx.Response(200, content=b"PNGDATA", headers={"content-type": "image/png"})
    )
    got = await pose.fetch(
        "https://img.example.com/a/p.png?x=1",
        resolver=PUBLIC,
        max_bytes=1000,
        timeout_s=5,
        transport=transport,
    )
    assert got.data == b"PNGDATA" and got.content_type == "image/png"
    (req,) = seen
    assert req.url.host == "93.184.216.34" and req.url.path == "/a/p.png" and req.url.query == b"x=1"
    assert req.headers["host"] == "img.example.com"
    assert req.extensions["sni_hostname"] == "img.example.com"


async def test_fetch_rechecks_dns_at_fetch_time() -> None:
    """DNS rebinding: public at validation, private when the download starts."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    async def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    src = await pose.validate(
        "https://rebind.example.com/p", user_id=USER, key_from_uri=key_from_uri, resolver=rebinding
    )
    transport, seen = _transport(lambda r: httpx.Response(200, content=b"x"))
    with pytest.raises(InvalidInput, match="127.0.0.1 is a loopback"):
        await pose.fetch(src.url, resolver=rebinding, max_bytes=1000, timeout_s=5, transport=transport)
    assert seen == []


async def test_redirects_are_rechecked_and_bounded() -> None:
    table = resolver_for({"img.example.com": ["93.184.216.34"], "internal.example.com": ["10.0.0.7"]})

    def to_internal(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "https://internal.example.com/secret"})

    transport, seen = _transport(to_internal)
    with pytest.raises(InvalidInput, match="10.0.0.7 is a private"):
        await pose.fetch(
            "https://img.example.com/p", resolver=table, max_bytes=1000, timeout_s=5, transport=transport
        )
    assert len(seen) == 1

    loop, seen = _transport(lambda r: httpx.Response(301, headers={"location": "/again"}))
    with pytest.raises(InvalidInput, match="redirected more than 2 times"):
        await pose.fetch(
            "https://img.example.com/p",
            resolver=table,
            max_bytes=1000,
            timeout_s=5,
            max_redirects=2,
            transport=loop,
        )
    assert len(seen) == 3

    to_http, _ = _transport(lambda r: httpx.Response(302, headers={"location": "http://img.example.com/p"}))
    with pytest.raises(InvalidInput, match="https"):
        await pose.fetch(
            "https://img.example.com/p", resolver=table, max_bytes=1000, timeout_s=5, transport=to_http
        )


async def test_size_cap_on_declared_and_streamed_bodies() -> None:
    declared, _ = _transport(lambda r: httpx.Response(200, content=b"x" * 5000))
    with pytest.raises(InvalidInput, match="larger than the limit of 1000 bytes"):
        await pose.fetch(
            "https://img.example.com/p", resolver=PUBLIC, max_bytes=1000, timeout_s=5, transport=declared
        )

    async def body():
        for _ in range(10):
            yield b"y" * 500

    streamed, _ = _transport(lambda r: httpx.Response(200, content=body()))
    with pytest.raises(InvalidInput, match="larger than the limit of 1000 bytes"):
        await pose.fetch(
            "https://img.example.com/p", resolver=PUBLIC, max_bytes=1000, timeout_s=5, transport=streamed
        )


async def test_time_cap_and_http_errors() -> None:
    import asyncio

    class Slow(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(5)
            return httpx.Response(200, content=b"late")

    with pytest.raises(InvalidInput, match="within 0.2 s"):
        await pose.fetch(
            "https://img.example.com/p", resolver=PUBLIC, max_bytes=1000, timeout_s=0.2, transport=Slow()
        )

    missing, _ = _transport(lambda r: httpx.Response(404))
    with pytest.raises(InvalidInput, match="HTTP 404"):
        await pose.fetch(
            "https://img.example.com/p", resolver=PUBLIC, max_bytes=1000, timeout_s=5, transport=missing
        )

    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    broken, _ = _transport(boom)
    with pytest.raises(InvalidInput, match="could not be downloaded: ConnectError"):
        await pose.fetch(
            "https://img.example.com/p", resolver=PUBLIC, max_bytes=1000, timeout_s=5, transport=broken
        )


async def test_ipv6_address_is_bracketed_in_the_pinned_url() -> None:
    v6 = resolver_for({"v6.example.com": ["2606:4700:4700::1111"]})
    transport, seen = _transport(lambda r: httpx.Response(200, content=b"ok"))
    await pose.fetch("https://v6.example.com/p", resolver=v6, max_bytes=100, timeout_s=5, transport=transport)
    assert seen[0].url.host == "2606:4700:4700::1111" and seen[0].headers["host"] == "v6.example.com"
