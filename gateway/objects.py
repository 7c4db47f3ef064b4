"""Download URLs for stored objects (images, videos) that a client on another host can fetch.

The gateway serves an object itself, at a URL signed for one user with an expiry:
`/objects/<key>?user=<id>&expires=<unix>&signature=<hmac>`, where the signature is HMAC-SHA256 of (key, user,
expiry). A valid signature is not enough: the object must still belong to that user (their upload, or a character
or job they own) and its character must not be frozen, checked when the URL is used; so a freeze or an erasure
takes effect on links already handed out. On S3 the gateway reads the object from the bucket; with
`IDLOCK_GATEWAY_S3_PRESIGNED_LINKS` it hands out S3's own presigned URLs instead (no checks once handed out).
"""

from __future__ import annotations

import hashlib
import hmac
import mimetypes
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, urlencode

from gateway.errors import ApiError, frozen_error, not_found
from idlock.errors import IdlockError, NotFound
from idlock.storage import ObjectStore

UrlFor = Callable[[str], Awaitable[str | None]]

#: object key prefixes and what owns the objects under them: a user's uploads, a character's references, a job's
#: results and frames, the refiner's output for a job
UPLOADS, CHARACTERS, JOBS, REFINED = "uploads", "characters", "jobs", "refine"
#: content types the store's objects have, by extension (the local store keeps none)
CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".json": "application/json",
}


def content_type(key: str) -> str:
    """By the key's extension; the table first (Python's own lacks some, e.g. .webp before 3.13)."""
    suffix = PurePosixPath(key).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(key)[0] or "application/octet-stream"


def derive_key(secret: str, purpose: str = "object-urls") -> bytes:
    """A signing key for one purpose, derived from another secret (so one leaked key opens nothing else)."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class SignedUrl:
    key: str
    user_id: str
    expires: int
    signature: str


class ObjectSigner:
    """Signs and checks (key, user, expiry). Expiries are rounded up to a step, so that the same object gets the
    same URL for a while and the browser's cache keeps working across API responses."""

    def __init__(self, secret: bytes, ttl_s: int, *, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the URL signing key must be at least 16 bytes")
        self._secret = secret
        self.ttl_s = ttl_s
        self.step_s = max(1, min(300, ttl_s // 10))
        self.clock = clock

    def _mac(self, key: str, user_id: str, expires: int) -> str:
        msg = f"{key}\n{user_id}\n{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def sign(self, key: str, user_id: str) -> SignedUrl:
        now = int(self.clock())
        expires = (now // self.step_s + 1) * self.step_s + self.ttl_s
        return SignedUrl(key, user_id, expires, self._mac(key, user_id, expires))

    def url(self, base_url: str, key: str, user_id: str) -> str:
        s = self.sign(key, user_id)
        query = urlencode({"user": s.user_id, "expires": s.expires, "signature": s.signature})
        return f"{base_url.rstrip('/')}/objects/{quote(key)}?{query}"

    def verify(self, key: str, user_id: str, expires: int, signature: str) -> None:
        """Raises 403 for a signature that does not match, or one that has expired."""
        expected = self._mac(key, user_id, expires)
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(
                403, "permission_denied", "this download link's signature is not valid for this object"
            )
        if expires < self.clock():
            raise ApiError(
                403,
                "permission_denied",
                "this download link has expired: read the resource again from the API for a fresh link",
            )


Owns = Callable[[str, str], Awaitable[bool]]


class Ownership:
    """Whether a user owns the object at a key, from the owner of its folder. Answers are cached briefly, as a
    page of results asks about the same character or job many times."""

    def __init__(
        self, owns_character: Owns, owns_job: Owns, *, ttl_s: float = 30.0, clock=time.monotonic
    ) -> None:
        self._owns = {CHARACTERS: owns_character, JOBS: owns_job, REFINED: owns_job}
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[tuple[str, str, str], tuple[bool, float]] = {}

    async def check(self, key: str, user_id: str) -> None:
        """404 (as for a missing object) unless `user_id` owns the object."""
        parts = key.split("/")
        if len(parts) < 3 or not user_id:
            raise not_found("object", key)
        kind, owner_id = parts[0], parts[1]
        if kind == UPLOADS:
            if owner_id != user_id:
                raise not_found("object", key)
            return
        owns = self._owns.get(kind)
        if owns is None:
            raise not_found("object", key)
        now = self.clock()
        cached = self._cache.get((kind, owner_id, user_id))
        if cached is not None and cached[1] > now:
            mine = cached[0]
        else:
            mine = await owns(owner_id, user_id)
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[(kind, owner_id, user_id)] = (mine, now + self.ttl_s)
        if not mine:
            raise not_found("object", key)


class Downloads:
    """Links to the store's objects, and the files behind the local store's links."""

    def __init__(
        self,
        store: ObjectStore,
        signer: ObjectSigner,
        ownership: Ownership,
        frozen: Callable[[str], Awaitable[str]] | None = None,
        *,
        presigned: bool = False,
    ) -> None:
        self.store = store
        self.signer = signer
        self.ownership = ownership
        #: the frozen character (reported, under review) a key's file belongs to, "" for none
        self.frozen = frozen
        #: S3's own presigned URLs instead of the gateway's links (S3 only)
        self.presigned = presigned and store.scheme != "file"

    def links(self, user_id: str, base_url: str) -> UrlFor:
        """Download URLs for one user: signed links to the gateway's /objects (or, when set, S3's presigned
        URLs). None for a URI that is not of our store."""
        store, signer = self.store, self.signer

        async def url_for(uri: str) -> str | None:
            try:
                key = store.key_from_uri(uri)
                if self.presigned:
                    return await store.url(key)
            except IdlockError:
                return None
            return signer.url(base_url, key, user_id)

        return url_for

    async def open(self, key: str, user_id: str, expires: int, signature: str) -> Path | bytes:
        """What is behind a signed link (the local store's file, or an S3 object's bytes): 403 for a bad or
        expired signature, 404 when the object is missing or not the user's, 423 while its character is frozen."""
        if self.presigned:
            raise not_found("object", key)  # fetched from S3, at its presigned URLs
        self.signer.verify(key, user_id, expires, signature)
        await self.ownership.check(key, user_id)
        if self.frozen is not None and (character_id := await self.frozen(key)):
            raise frozen_error(character_id)
        if self.store.scheme != "file":
            try:
                return await self.store.get(key)
            except NotFound:
                raise not_found("object", key) from None
        try:
            path = self.store.path_of(key)  # type: ignore[attr-defined]  (the local store's)
        except IdlockError:
            raise not_found("object", key) from None
        if not path.is_file():
            raise not_found("object", key)
        return path
