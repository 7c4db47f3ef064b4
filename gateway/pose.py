"""Rules for `pose_image_url`, and a guarded download of the https ones.

Accepted:
- an object-storage URI of this deployment's store (`s3://<bucket>/...` or `file:///<root>/...`) whose key lies
  under the caller's own upload prefix `uploads/<user_id>/` (what `POST /api/v1/uploads` writes);
- an `https://` URL (default port 443, no user:password part) whose host resolves only to public addresses:
  every resolved address is checked (loopback, private, link-local, multicast, reserved, unspecified, shared,
  documentation ranges and IPv4 addresses embedded in IPv6 are refused).

The download resolves and checks the host again (DNS may answer differently than at validation), connects to the
checked address itself (the hostname still goes in Host and TLS SNI, so the certificate is verified for it),
follows at most N redirects, each checked the same way, and stops at a size and a time limit.

DNS goes through a `resolver(host, port) -> [address, ...]` parameter, so tests never touch the network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from gateway import uploads
from gateway.errors import bad_request
from gateway.settings import GatewaySettings
from idlock.errors import InvalidInput
from idlock.refs import pose_copy_prefix, upload_prefix
from idlock.storage import ObjectStore

Resolver = Callable[[str, int], Awaitable[list[str]]]
FIELD = "pose_image_url"
STORAGE_SCHEMES = ("s3", "file")
MAX_URL_LENGTH = 2048

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_6TO4 = ipaddress.ip_network("2002::/16")


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address `host` resolves to (A and AAAA)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInput(f"{FIELD}: host {host!r} cannot be resolved ({exc.strerror or exc})") from exc
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        addr = str(sockaddr[0]).split("%", 1)[0]
        if addr not in seen:
            seen.append(addr)
    return seen


def address_problem(address: str) -> str | None:
    """Why `address` is not a public unicast address, or None when it is."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = ip.ipv4_mapped
        if embedded is None and (ip in _NAT64 or ip in _NAT64_LOCAL):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and ip in _6TO4:
            embedded = ipaddress.IPv4Address((int(ip) >> 80) & 0xFFFFFFFF)
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is not None:
            inner = address_problem(str(embedded))
            if inner:
                return f"{ip} embeds {inner}"
    checks = (
        ("is_unspecified", "unspecified"),
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_private", "private"),
    )
    for attr, label in checks:
        if getattr(ip, attr):
            return f"{ip} is a {label} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


@dataclass(frozen=True)
class PoseSource:
    """A validated pose reference: a key in the caller's storage prefix, or a public https URL."""

    kind: str  # "storage" | "https"
    url: str
    key: str = ""
    host: str = ""
    port: int = 443


def _https_parts(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        raise InvalidInput(
            f"{FIELD} must be an https:// URL or a storage URI under your uploads; got {parts.scheme or 'no'} scheme"
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(f"{FIELD} must not contain a user name or password")
    host = parts.hostname
    if not host:
        raise InvalidInput(f"{FIELD} has no host")
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise InvalidInput(f"{FIELD} has an invalid port") from exc
    if port != 443:
        raise InvalidInput(f"{FIELD} must use the default https port 443, not {port}")
    return host.rstrip(".").lower(), port


def classify(url: str, *, user_id: str, key_from_uri: Callable[[str], str]) -> PoseSource:
    """Syntax and ownership rules (no network). Storage URIs must lie under `uploads/<user_id>/`."""
    url = (url or "").strip()
    if not url:
        raise InvalidInput(f"{FIELD} is empty")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"{FIELD} is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 for c in url):
        raise InvalidInput(f"{FIELD} contains spaces or control characters")
    scheme = urlsplit(url).scheme.lower()
    if scheme in STORAGE_SCHEMES:
        try:
            key = key_from_uri(url)
        except InvalidInput as exc:
            raise InvalidInput(
                f"{FIELD} is not a URI of this deployment's object storage: {exc.message}"
            ) from exc
        if not key.startswith(upload_prefix(user_id)):
            raise InvalidInput(
                f"{FIELD} must point into your own uploads ({upload_prefix(user_id)}...); upload the pose image "
                "with POST /api/v1/uploads first"
            )
        return PoseSource(kind="storage", url=url, key=key)
    host, port = _https_parts(url)
    return PoseSource(kind="https", url=url, host=host, port=port)


async def public_addresses(host: str, port: int, resolver: Resolver) -> list[str]:
    """Resolve `host` and require that *every* address is public; the checked addresses in resolver order."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal is not None else list(await resolver(host, port))
    if not addresses:
        raise InvalidInput(f"{FIELD}: host {host!r} resolves to no address")
    for address in addresses:
        problem = address_problem(address)
        if problem:
            raise InvalidInput(f"{FIELD}: host {host!r} resolves to a non-public address ({problem})")
    return addresses


async def validate(
    url: str, *, user_id: str, key_from_uri: Callable[[str], str], resolver: Resolver
) -> PoseSource:
    """`classify` plus, for https, the address check."""
    source = classify(url, user_id=user_id, key_from_uri=key_from_uri)
    if source.kind == "https":
        await public_addresses(source.host, source.port, resolver)
    return source


@dataclass(frozen=True)
class Fetched:
    data: bytes
    url: str
    content_type: str


def _pinned(url: str, address: str) -> str:
    """`url` with its host replaced by the checked `address`."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    return urlunsplit(("https", host, parts.path or "/", parts.query, ""))


async def fetch(
    url: str,
    *,
    resolver: Resolver,
    max_bytes: int,
    timeout_s: float,
    max_redirects: int = 3,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Fetched:
    """Download a public https URL under the rules above. Every failure is `InvalidInput` naming the field."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _fetch(url, resolver, max_bytes, max_redirects, transport)
    except TimeoutError as exc:
        raise InvalidInput(f"{FIELD} did not finish downloading within {timeout_s:g} s") from exc


async def _fetch(
    url: str,
    resolver: Resolver,
    max_bytes: int,
    max_redirects: int,
    transport: httpx.AsyncBaseTransport | None,
) -> Fetched:
    current = url
    async with httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False) as client:
        for hop in range(max_redirects + 1):
            host, port = _https_parts(current)
            addresses = await public_addresses(host, port, resolver)  # re-checked at fetch time
            request = client.build_request(
                "GET",
                _pinned(current, addresses[0]),
                headers={"Host": host, "Accept": "image/*", "User-Agent": "idlock-gateway/1"},
                extensions={"sni_hostname": host},
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise InvalidInput(f"{FIELD} could not be downloaded: {type(exc).__name__}") from exc
            try:
                if response.status_code in (301, 302, 303, 307, 308):
                    location = response.headers.get("location", "")
                    if not location:
                        raise InvalidInput(f"{FIELD} redirected without a Location")
                    if hop >= max_redirects:
                        raise InvalidInput(f"{FIELD} redirected more than {max_redirects} times")
                    current = urljoin(current, location)
                    continue
                if response.status_code != 200:
                    raise InvalidInput(f"{FIELD} answered HTTP {response.status_code}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise InvalidInput(
                        f"{FIELD} is larger than the limit of {max_bytes} bytes ({declared} bytes)"
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise InvalidInput(f"{FIELD} is larger than the limit of {max_bytes} bytes")
                    chunks.append(chunk)
                return Fetched(b"".join(chunks), current, response.headers.get("content-type", ""))
            except httpx.HTTPError as exc:
                raise InvalidInput(f"{FIELD} could not be downloaded: {type(exc).__name__}") from exc
            finally:
                await response.aclose()
    raise InvalidInput(f"{FIELD} redirected more than {max_redirects} times")  # pragma: no cover


async def resolve(
    url: str,
    *,
    user_id: str,
    store: ObjectStore,
    settings: GatewaySettings,
    resolver: Resolver,
    transport: httpx.AsyncBaseTransport | None,
) -> tuple[str, str | None]:
    """A submission's pose image as a URI of our store: (uri, key of a copy made for this submission, to delete
    when it does not go through). An https image is downloaded, cleaned and stored under the user's uploads."""
    try:
        source = await validate(url, user_id=user_id, key_from_uri=store.key_from_uri, resolver=resolver)
        if source.kind == "storage":
            if not await store.exists(source.key):
                raise InvalidInput(f"{FIELD}: {url} does not exist in your uploads")
            return store.uri_for(source.key), None
        fetched = await fetch(
            source.url,
            resolver=resolver,
            max_bytes=settings.pose_max_bytes,
            timeout_s=settings.pose_fetch_timeout_s,
            max_redirects=settings.pose_max_redirects,
            transport=transport,
        )
    except InvalidInput as exc:
        raise bad_request(exc.message, field=FIELD) from exc
    clean = uploads.clean_image(
        fetched.data, name=FIELD, max_pixels=settings.max_image_pixels, jpeg_quality=settings.jpeg_quality
    )
    key = f"{pose_copy_prefix(user_id)}{uuid.uuid4().hex}.{clean.extension}"
    stored = await store.put(key, clean.data, clean.mime)
    return stored.uri, key
