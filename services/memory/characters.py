"""Creating and erasing a character across every store of the memory service: rows, Qdrant points, stored
objects under `characters/<id>/`, prompt-cache keys. Plain async code, no gRPC: the servicer injects the call to
the identity service as `encode`.

Create: consent first (nothing is read or stored without it), 1..max reference images that decode, then the
identity service encodes them, and only then anything is written: the reference images, the semantic and
per-view vectors, and last the row (the commit point). A failure after the first write removes what was written.
A `request_id` makes the character id deterministic per (owner, request), so a retried create returns the
character the first one made.

Erase: vectors, objects and cache keys first, the rows last (so a failed store can be retried: the character is
still there to address), then a second sweep of vectors and cache for writes that raced the erasure.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from idlock.errors import AlreadyExists, InvalidInput, NotFound, PreconditionFailed
from idlock.images import decode_image
from idlock.storage import ObjectStore
from idlock.text import strip_control, strip_format

from . import repository as repo
from .models import STATUS_NEEDS_MORE_REFS, STATUS_READY, TAG_CATEGORIES, Character

log = logging.getLogger("idlock.memory")

_NS = uuid.UUID("0c7f3b4e-2a51-4f0e-8f7e-6d656d6f7279")
_EXT = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff", "GIF": "gif"}
_MIME = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
    "gif": "image/gif",
}

#: `async with sessions() as s:` gives a session that commits on success (e.g. `Database.session`)
Sessions = Callable[[], AbstractAsyncContextManager[Any]]


def objects_prefix(character_id: str) -> str:
    return f"characters/{character_id}/"


def character_id_for(owner_id: str, request_id: str) -> str:
    """The id a create with this request id gets: the same for a retry, distinct per owner."""
    return str(uuid.uuid5(_NS, f"{owner_id}\x1f{request_id}"))


@dataclass(frozen=True)
class EncodedReferences:
    """What the identity service made of the references."""

    encoder: str
    vector: Sequence[float]
    views: Sequence[Sequence[float]]
    #: one entry per reference (the identity service's ReferenceQuality, proto JSON field names)
    quality: Sequence[Mapping[str, Any]]
    inconsistent_indices: Sequence[int] = ()


@dataclass(frozen=True)
class Created:
    character: Character
    quality: list[dict[str, Any]]
    #: False when a create with the same request id had already made the character
    created: bool


def status_of(enc: EncodedReferences) -> tuple[str, list[str]]:
    """READY, or NEEDS_MORE_REFS with one reason per flagged reference (inconsistent, too small, too blurry)."""
    reasons: list[str] = []
    inconsistent = set(enc.inconsistent_indices)
    for i, q in enumerate(enc.quality):
        idx = int(q.get("index", i))
        if idx in inconsistent or q.get("inconsistent"):
            reasons.append(f"reference image {idx} looks like a different person than the other references")
        if q.get("too_small"):
            reasons.append(f"reference image {idx}: the face is small ({q.get('face_size_px', 0):.0f} px)")
        if q.get("too_blurry"):
            reasons.append(f"reference image {idx}: the face is blurry (sharpness {q.get('blur', 0):.1f})")
    return (STATUS_NEEDS_MORE_REFS if reasons else STATUS_READY), reasons


#: limits of a character sheet: characters of one text, entries of one list
SHEET_TEXT_MAX, SHEET_LIST_MAX = 1000, 30


def clean_sheet(sheet: Mapping[str, Any]) -> dict[str, Any]:
    """The stored sheet: strings stripped, list fields as lists of non-empty strings; an oversized field is
    refused (InvalidInput), naming it."""
    out: dict[str, Any] = {}
    for k, v in sheet.items():
        if isinstance(v, str):
            if len(v) > SHEET_TEXT_MAX:
                raise InvalidInput(f"sheet.{k} is {len(v)} characters long, the limit is {SHEET_TEXT_MAX}")
            if v.strip():
                out[k] = v.strip()
        elif v is not None:
            vals = [str(x).strip() for x in v if str(x).strip()]
            if len(vals) > SHEET_LIST_MAX or any(len(x) > SHEET_TEXT_MAX for x in vals):
                raise InvalidInput(
                    f"sheet.{k} has more than {SHEET_LIST_MAX} entries or one longer than {SHEET_TEXT_MAX} "
                    "characters"
                )
            if vals:
                out[k] = vals
    return out


async def create_character(
    sessions: Sessions,
    store: ObjectStore,
    vectors: Any,
    *,
    owner_id: str,
    name: str,
    consent_given: bool,
    images: Sequence[bytes],
    encode: Callable[[], Awaitable[EncodedReferences]],
    description: str = "",
    sheet: Mapping[str, Any] | None = None,
    request_id: str = "",
    max_references: int = 5,
) -> Created:
    if not consent_given:
        raise PreconditionFailed(
            "consent is required to create a character from reference images (consent_given is false); "
            "nothing was stored"
        )
    if not owner_id:
        raise InvalidInput("owner_id is required")
    # a name or description that reads one way and is stored another (bidi overrides, zero-width characters)
    # is cleaned before it is kept
    name, description = strip_control(name or ""), strip_format(description or "")
    if not name:
        raise InvalidInput("name is required")
    n = len(images)
    if not 1 <= n <= max_references:
        raise InvalidInput(f"between 1 and {max_references} reference images are needed (got {n})")

    cid = character_id_for(owner_id, request_id) if request_id else str(uuid.uuid4())
    if request_id:
        existing = await _existing(sessions, cid)
        if existing is not None:
            return Created(existing, list(existing.reference_quality or []), False)

    def decode_all() -> list[tuple[str, int, int]]:
        out = []
        for i, data in enumerate(images):
            img = decode_image(data, name=f"reference image {i}")
            out.append((_EXT.get(img.format, "img"), img.width, img.height))
        return out

    decoded = await asyncio.to_thread(decode_all)
    enc = await encode()  # errors (no face, ...) propagate: nothing has been written yet
    if len(enc.quality) != n:
        raise PreconditionFailed(f"identity service reported {len(enc.quality)} qualities for {n} references")
    status, reasons = status_of(enc)
    quality = [dict(q) for q in enc.quality]

    written = False
    try:
        refs: list[dict[str, Any]] = []
        for i, (data, (ext, w, h)) in enumerate(zip(images, decoded, strict=True)):
            written = True
            mime = _MIME.get(ext, "application/octet-stream")
            obj = await store.put(f"{objects_prefix(cid)}ref_{i}.{ext}", data, mime)
            refs.append({"uri": obj.uri, "sha256": obj.sha256, "mime": mime, "width": w, "height": h})
        await vectors.upsert_semantic(
            cid, owner_id, enc.encoder, enc.vector, enc.views, [r["uri"] for r in refs]
        )
        async with sessions() as s:
            ch = await repo.create_character(
                s,
                owner_id=owner_id,
                name=name,
                consent_given=True,
                description=description,
                sheet=clean_sheet(sheet or {}),
                encoder=enc.encoder,
                identity_dim=len(enc.vector),
                ref_image_refs=refs,
                status=status,
                status_reasons=reasons,
                character_id=cid,
                reference_quality=quality,
            )
    except AlreadyExists:
        # a concurrent create with the same request id won: its objects and points are the same ones
        existing = await _existing(sessions, cid)
        if existing is None:
            raise
        return Created(existing, list(existing.reference_quality or []), False)
    except BaseException:
        if written:
            await _undo_create(store, vectors, cid)
        raise
    return Created(ch, quality, True)


async def _existing(sessions: Sessions, cid: str) -> Character | None:
    async with sessions() as s:
        try:
            return await repo.get_character(s, cid)
        except NotFound:
            return None


async def _undo_create(store: ObjectStore, vectors: Any, cid: str) -> None:
    for what, fn in (
        ("objects", lambda: store.delete_prefix(objects_prefix(cid))),
        ("vectors", lambda: vectors.delete_character(cid)),
    ):
        try:
            await asyncio.shield(fn())
        except BaseException as e:  # noqa: BLE001 - report the original error, log this one
            log.error("undoing the failed create of %s: removing %s failed: %s", cid, what, e)


# ---- episodes ----------------------------------------------------------------------------------------------------


def check_face_embedding(ch: Character, encoder: str, values: Sequence[float]) -> list[float] | None:
    """The episode's face embedding when it fits the character's identity, else InvalidInput naming why."""
    if not values:
        return None
    if encoder and ch.encoder and encoder != ch.encoder:
        raise InvalidInput(
            f"face_embedding was made by encoder {encoder!r}; character {ch.id} uses {ch.encoder!r}"
        )
    if ch.identity_dim and len(values) != ch.identity_dim:
        raise InvalidInput(
            f"face_embedding has {len(values)} dimensions; character {ch.id} identity has {ch.identity_dim}"
        )
    return [float(v) for v in values]


def tags_dict(tags: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    return {c: list(tags.get(c, ())) for c in TAG_CATEGORIES if tags.get(c)}


# ---- erasure -----------------------------------------------------------------------------------------------------


@dataclass
class StoreReport:
    store: str
    removed: int = 0
    ok: bool = True
    error: str = ""
    details: dict[str, int] = field(default_factory=dict)


STORES = ("database", "vectors", "objects", "prompt_cache")


async def erase_character(
    sessions: Sessions,
    store: ObjectStore,
    vectors: Any,
    cache: Any | None,
    character_id: str,
    *,
    owner_id: str | None = None,
    resume: bool = False,
) -> list[StoreReport]:
    """Remove the character from every store; one report per store (database, vectors, objects, prompt_cache).

    NotFound when the character does not exist (or belongs to another owner), unless `resume` (an erasure taken
    up again, whose rows may be gone). When a store other than the database fails, the rows are kept (reported
    not ok) so that DeleteCharacter can be retried.
    """
    if not resume:
        async with sessions() as s:
            await repo.get_character(s, character_id, owner_id=owner_id)
    reports = {name: StoreReport(name) for name in STORES}

    async def step(name: str, fn: Callable[[], Awaitable[int]]) -> None:
        r = reports[name]
        try:
            r.removed += int(await fn())
        except Exception as e:  # noqa: BLE001 - every store is tried; the report says which failed
            log.error("erasing %s from %s failed: %s", character_id, name, e)
            r.ok = False
            r.error = f"{type(e).__name__}: {e}"

    async def no_cache() -> int:
        return 0

    clear_cache = (lambda: cache.delete_for_character(character_id)) if cache is not None else no_cache
    await step("vectors", lambda: vectors.delete_character(character_id))
    await step("objects", lambda: store.delete_prefix(objects_prefix(character_id)))
    await step("prompt_cache", clear_cache)
    failed = [r.store for r in reports.values() if not r.ok]
    if failed:
        db = reports["database"]
        db.ok = False
        db.error = (
            f"rows kept so the erasure can be retried: {', '.join(failed)} failed; call DeleteCharacter again"
        )
        return list(reports.values())

    async def rows() -> int:
        async with sessions() as s:
            counts = await repo.delete_character(s, character_id, must_exist=not resume)
        reports["database"].details = counts
        return sum(counts.values())

    await step("database", rows)
    # writes that raced the erasure (an episode indexed while the rows were still there)
    await step("vectors", lambda: vectors.delete_character(character_id))
    await step("prompt_cache", clear_cache)
    return list(reports.values())
