"""Object storage for images, videos and LoRA weights: one async interface over a local folder and S3.

Objects are named by keys (`characters/c1/refs/0.png`) and referred to across services by URIs:
`file://<absolute path>` or `s3://<bucket>/<key>`. A store only accepts URIs that point into itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from idlock.errors import (
    InvalidInput,
    NotFound,
    StorageFull,
    StorageNotWritable,
    StorageUnavailable,
    StorageUnreachable,
    Unavailable,
)
from idlock.files import replace_whole
from idlock.metrics import object_store_call
from idlock.settings import StorageSettings

log = logging.getLogger("idlock.storage")
_TMP_DIR = ".idlock-tmp"  # in the root so the final rename stays on one filesystem
_MAX_KEY = 1024


@dataclass(frozen=True)
class StoredObject:
    uri: str
    key: str
    sha256: str
    size: int
    content_type: str


def validate_key(key: str) -> str:
    """A relative, '/'-separated key without empty, '.' or '..' parts. Returns it unchanged."""
    if not isinstance(key, str) or not key:
        raise InvalidInput("object key must be a non-empty string")
    if len(key.encode()) > _MAX_KEY:
        raise InvalidInput(f"object key is longer than {_MAX_KEY} bytes: {key[:60]!r}...")
    if key.startswith("/") or "\\" in key or "\x00" in key or (len(key) > 1 and key[1] == ":"):
        raise InvalidInput(f"object key {key!r} must be relative, '/'-separated, without backslashes or NUL")
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise InvalidInput(f"object key {key!r} has an empty, '.' or '..' part")
    if parts[0] == _TMP_DIR:
        raise InvalidInput(f"object key {key!r} uses the reserved prefix {_TMP_DIR}/")
    return key


def _validate_prefix(prefix: str) -> str:
    """Prefixes may be empty or end with '/', but otherwise follow key rules."""
    if prefix == "":
        return prefix
    validate_key(prefix.rstrip("/") if prefix.endswith("/") else prefix)
    return prefix


class ObjectStore(ABC):
    """Async object store. Keys follow `validate_key`; a missing object raises NotFound."""

    scheme: str

    @abstractmethod
    async def _put(self, key: str, data: bytes, content_type: str) -> StoredObject: ...

    @abstractmethod
    async def _get(self, key: str) -> bytes: ...

    @abstractmethod
    async def _exists(self, key: str) -> bool: ...

    @abstractmethod
    async def _delete(self, key: str) -> bool: ...

    @abstractmethod
    async def list(self, prefix: str = "") -> list[str]:
        """Keys starting with `prefix` (a plain string prefix, as in S3), sorted."""

    @abstractmethod
    async def listing(self, prefix: str = "") -> list[tuple[str, float]]:
        """(key, last-modified Unix time) of the keys starting with `prefix`, sorted by key."""

    @abstractmethod
    async def url(self, key: str) -> str:
        """A URL a client can fetch: presigned for S3, the file path for the local store."""

    @abstractmethod
    def uri_for(self, key: str) -> str: ...

    @abstractmethod
    def key_from_uri(self, uri: str) -> str: ...

    async def close(self) -> None:
        return None

    def _key(self, key_or_uri: str) -> str:
        if "://" in key_or_uri:
            return self.key_from_uri(key_or_uri)
        return validate_key(key_or_uri)

    async def put(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> StoredObject:
        with object_store_call(self.scheme, "put"):
            return await self._put(validate_key(key), data, content_type)

    async def get(self, key_or_uri: str) -> bytes:
        with object_store_call(self.scheme, "get"):
            return await self._get(self._key(key_or_uri))

    async def exists(self, key_or_uri: str) -> bool:
        with object_store_call(self.scheme, "exists"):
            return await self._exists(self._key(key_or_uri))

    async def delete(self, key_or_uri: str) -> bool:
        """Delete one object; False when it was not there."""
        with object_store_call(self.scheme, "delete"):
            return await self._delete(self._key(key_or_uri))

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with `prefix` (e.g. a character's folder on erasure)."""
        if not prefix:
            raise InvalidInput("delete_prefix needs a non-empty prefix; refusing to empty the whole store")
        deleted = 0
        for key in await self.list(prefix):
            if await self._delete(key):
                deleted += 1
        return deleted


def _stored(uri: str, key: str, data: bytes, content_type: str) -> StoredObject:
    return StoredObject(uri, key, hashlib.sha256(data).hexdigest(), len(data), content_type)


class LocalObjectStore(ObjectStore):
    """Objects as files under `root`. Content types are not kept (callers keep them beside the URI)."""

    scheme = "file"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def path_of(self, key: str) -> Path:
        """The file holding an object (it may not exist): for serving it without reading it into memory."""
        return self._path(key)

    def uri_for(self, key: str) -> str:
        return self._path(key).as_uri()

    def key_from_uri(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            # the store's root is a server path: logged here, never told to the caller
            log.info("refused URI %r: not a file:// URI under %s", uri, self.root)
            raise InvalidInput("the URI is not a file:// URI of this object store")
        path = Path(unquote(parsed.path))
        try:
            rel = path.relative_to(self.root)
        except ValueError:
            log.info("refused URI %r: outside %s", uri, self.root)
            raise InvalidInput("the URI points outside this object store") from None
        return validate_key(rel.as_posix())

    def _put_sync(self, key: str, data: bytes) -> None:
        target = self._path(key)
        tmp_dir = self.root / _TMP_DIR
        tmp_dir.mkdir(exist_ok=True)
        if target.is_dir():
            raise InvalidInput(f"object key {key!r} names a folder of other objects")
        replace_whole(target, data, tmp_dir=tmp_dir)  # readers see the old object or the whole new one

    async def _put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        try:
            await asyncio.to_thread(self._put_sync, key, bytes(data))
        except OSError as e:
            raise local_write_error(self.root, key, e) from e
        return _stored(self.uri_for(key), key, data, content_type)

    async def _get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"object {key!r} not found in {self.root}", details={"key": key}) from None

    async def _exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    def _delete_sync(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False
        # drop folders the delete emptied, so list() and the disk stay tidy
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
        return True

    async def _delete(self, key: str) -> bool:
        return await asyncio.to_thread(self._delete_sync, key)

    def _list_sync(self, prefix: str) -> list[str]:
        # walk only the deepest folder the prefix names, then filter by the string prefix
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        if not start.is_dir():
            return []
        out = []
        for dirpath, dirnames, filenames in os.walk(start):
            if Path(dirpath) == self.root and _TMP_DIR in dirnames:
                dirnames.remove(_TMP_DIR)
            for name in filenames:
                key = (Path(dirpath) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    out.append(key)
        return sorted(out)

    async def list(self, prefix: str = "") -> list[str]:
        return await asyncio.to_thread(self._list_sync, _validate_prefix(prefix))

    async def listing(self, prefix: str = "") -> list[tuple[str, float]]:
        def stat() -> list[tuple[str, float]]:
            out = []
            for key in self._list_sync(_validate_prefix(prefix)):
                with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                    out.append((key, self.root.joinpath(*key.split("/")).stat().st_mtime))
            return out

        return await asyncio.to_thread(stat)

    async def url(self, key: str) -> str:
        return str(self._path(key))


def local_write_error(root: Path, key: str, e: OSError) -> Exception:
    """A failed write to the local store as the storage error it is (full, not writable), or `e` itself. The
    message names the key, never the server's path (that is logged)."""
    log.warning("writing %s under %s failed: %s", key, root, e)
    where = f"object {key!r} could not be written"
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return StorageFull(f"object storage is full: {where} ({e.strerror})", details={"key": key})
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StorageNotWritable(
            f"object storage is not writable: {where} ({e.strerror})", details={"key": key}
        )
    if e.errno in (errno.EIO, errno.ENOTCONN, errno.ESTALE):
        return StorageUnreachable(
            f"object storage is unreachable: {where} ({e.strerror})", details={"key": key}
        )
    return e


#: S3 error codes that say what is wrong with the store itself (not with one key)
_S3_FULL = {"InsufficientStorage", "QuotaExceeded", "XMinioStorageFull"}
_S3_NOT_WRITABLE = {"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch"}


class S3ObjectStore(ObjectStore):
    """Objects in one S3 bucket (AWS, MinIO or moto); boto3 calls run in worker threads."""

    scheme = "s3"

    def __init__(self, bucket: str, *, client: Any, presign_ttl_s: int = 3600) -> None:
        if not bucket:
            raise InvalidInput("S3 bucket name is empty (IDLOCK_STORAGE_S3_BUCKET)")
        self.bucket = bucket
        self.client = client
        self.presign_ttl_s = presign_ttl_s

    @classmethod
    def from_settings(cls, storage: StorageSettings) -> S3ObjectStore:
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=storage.s3_endpoint_url or None,
            region_name=storage.s3_region,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}, s3={"addressing_style": "path"}),
        )
        return cls(storage.s3_bucket, client=client, presign_ttl_s=storage.presign_ttl_s)

    def _error(self, action: str, key: str, e: Exception) -> Exception:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(e, ClientError):
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                return NotFound(f"object {key!r} not found in s3://{self.bucket}", details={"key": key})
            if code == "NoSuchBucket":
                return NotFound(
                    f"S3 bucket {self.bucket!r} does not exist "
                    "(create it, or set IDLOCK_STORAGE_S3_CREATE_BUCKET=true)"
                )
            what = f"S3 {action} of {key!r} in bucket {self.bucket!r} failed: {code}: {e}"
            if code in _S3_FULL:
                return StorageFull(f"object storage is full: {what}", details={"key": key})
            if code in _S3_NOT_WRITABLE and action in ("put", "delete"):
                return StorageNotWritable(f"object storage is not writable: {what}", details={"key": key})
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if status == 507:
                return StorageFull(f"object storage is full: {what}", details={"key": key})
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "RequestTimeout"):
                return StorageUnreachable(f"object storage is unreachable: {what}", details={"key": key})
            return StorageUnavailable(what, details={"key": key})
        if isinstance(e, BotoCoreError):  # connection refused, timeouts, DNS: the endpoint cannot be reached
            return StorageUnreachable(
                f"object storage is unreachable: S3 {action} of {key!r} in bucket {self.bucket!r} failed: {e}",
                details={"key": key},
            )
        return e

    async def _call(self, action: str, key: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, **kwargs)
        except Exception as e:
            err = self._error(action, key, e)
            if err is e:
                raise
            raise err from e

    async def ensure_bucket(self, create: bool, region: str = "us-east-1") -> None:
        """Check the bucket exists; create it when `create` (idempotent)."""
        from botocore.exceptions import ClientError

        try:
            await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)
            return
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code not in ("404", "NoSuchBucket", "NotFound"):
                raise Unavailable(f"cannot reach S3 bucket {self.bucket!r}: {code}: {e}") from e
        if not create:
            raise NotFound(
                f"S3 bucket {self.bucket!r} does not exist; "
                "create it or set IDLOCK_STORAGE_S3_CREATE_BUCKET=true"
            )
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1":  # us-east-1 rejects an explicit location constraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            await asyncio.to_thread(self.client.create_bucket, **kwargs)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") not in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                raise Unavailable(f"cannot create S3 bucket {self.bucket!r}: {e}") from e

    def uri_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{validate_key(key)}"

    def key_from_uri(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme != "s3":
            raise InvalidInput(f"URI {uri!r} is not an s3:// URI of bucket {self.bucket!r}")
        if parsed.netloc != self.bucket:
            raise InvalidInput(
                f"URI {uri!r} names bucket {parsed.netloc!r}, but this store uses {self.bucket!r}"
            )
        return validate_key(parsed.path.removeprefix("/"))

    async def _put(self, key: str, data: bytes, content_type: str) -> StoredObject:
        obj = _stored(self.uri_for(key), key, data, content_type)
        await self._call(
            "put",
            key,
            self.client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=bytes(data),
            ContentType=content_type,
            Metadata={"sha256": obj.sha256},
        )
        return obj

    async def _get(self, key: str) -> bytes:
        resp = await self._call("get", key, self.client.get_object, Bucket=self.bucket, Key=key)
        return await asyncio.to_thread(resp["Body"].read)

    async def _exists(self, key: str) -> bool:
        try:
            await self._call("head", key, self.client.head_object, Bucket=self.bucket, Key=key)
        except NotFound:
            return False
        return True

    async def _delete(self, key: str) -> bool:
        if not await self._exists(key):
            return False
        await self._call("delete", key, self.client.delete_object, Bucket=self.bucket, Key=key)
        return True

    def _list_sync(self, prefix: str) -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)

    async def list(self, prefix: str = "") -> list[str]:
        return await self._call("list", prefix, self._list_sync, prefix=_validate_prefix(prefix))

    def _listing_sync(self, prefix: str) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend((o["Key"], o["LastModified"].timestamp()) for o in page.get("Contents", []))
        return sorted(out)

    async def listing(self, prefix: str = "") -> list[tuple[str, float]]:
        return await self._call("list", prefix, self._listing_sync, prefix=_validate_prefix(prefix))

    def _versions_sync(self, prefix: str) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for v in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                out.append({"Key": v["Key"], "VersionId": v["VersionId"]})
        return out

    async def delete_prefix(self, prefix: str) -> int:
        """Every version of every object under `prefix` (an erasure on a versioned bucket leaves no old copy;
        an unversioned bucket lists each object once, as version "null"). Returns the number of keys."""
        if not prefix:
            raise InvalidInput("delete_prefix needs a non-empty prefix; refusing to empty the whole bucket")
        versions = await self._call("list", prefix, self._versions_sync, prefix=_validate_prefix(prefix))
        for i in range(0, len(versions), 1000):  # DeleteObjects takes at most 1000 keys
            batch = versions[i : i + 1000]
            resp = await self._call(
                "delete",
                prefix,
                self.client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
            if resp.get("Errors"):
                first = resp["Errors"][0]
                raise Unavailable(
                    f"S3 could not delete {len(resp['Errors'])} objects under {prefix!r}, e.g. "
                    f"{first.get('Key')!r}: {first.get('Code')} {first.get('Message')}"
                )
        return len({v["Key"] for v in versions})

    async def url(self, key: str) -> str:
        validate_key(key)
        return await self._call(
            "presign",
            key,
            self.client.generate_presigned_url,
            ClientMethod="get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=self.presign_ttl_s,
        )

    async def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


async def open_store(storage: StorageSettings, data_dir: Path) -> ObjectStore:
    """The configured store: `<data_dir>/objects` (or local_root) on disk, or an S3 bucket."""
    if storage.backend == "local":
        return LocalObjectStore(storage.local_root or Path(data_dir) / "objects")
    store = S3ObjectStore.from_settings(storage)
    await store.ensure_bucket(storage.s3_create_bucket, storage.s3_region)
    return store


__all__ = [
    "LocalObjectStore",
    "ObjectStore",
    "S3ObjectStore",
    "StoredObject",
    "open_store",
    "validate_key",
]
