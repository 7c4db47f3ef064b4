"""Async repository of the memory service over an `AsyncSession`.

Each function is one unit of work: it commits (or rolls back) before returning. Returned ORM objects are loaded
(refreshed when the session expires on commit), so callers can read their attributes afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Text, and_, bindparam, delete, func, or_, select, update
from sqlalchemy import cast as sa_cast
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from idlock.errors import InvalidInput, NotFound, PreconditionFailed
from idlock.pages import decode_token, encode_token
from idlock.text import strip_control, strip_format

from .models import (
    KINDS,
    STATUS_NEEDS_MORE_REFS,
    STATUS_READY,
    TAG_CATEGORIES,
    Character,
    Episode,
    StoryFold,
    Summary,
    utcnow,
)
from .state import SceneTags

MAX_PAGE = 200

# The statements of every scene's path (BuildContext, RecordEpisode), built once with bound parameters: SQLAlchemy
# otherwise builds and keys each statement in Python at every call, ~60 us each and some ten a scene.
_EPISODE_BY_JOB = (
    select(Episode)
    .where(Episode.character_id == bindparam("cid"), Episode.job_id == bindparam("job_id"))
    .execution_options(populate_existing=True)
)
_NEXT_SCENE = (  # bumps the counter: takes the character's lock (see record_episode)
    update(Character)
    .where(Character.id == bindparam("cid"))
    .values(
        episode_count=Character.episode_count + 1,
        memory_version=Character.memory_version + 1,
        updated_at=bindparam("now"),
    )
    .returning(Character.episode_count)
    .execution_options(synchronize_session=False)
)
_RECENT = (
    select(Episode)
    .where(Episode.character_id == bindparam("cid"))
    .order_by(Episode.scene_index.desc())
    .limit(bindparam("limit", type_=Integer))
)
_BY_SCENE = (
    select(Episode)
    .where(
        Episode.character_id == bindparam("cid"), Episode.scene_index.in_(bindparam("scenes", expanding=True))
    )
    .order_by(Episode.scene_index)
)
_SCENE_TAGS = (
    select(Episode.scene_index, Episode.tags_added, Episode.tags_removed, Episode.prompt, Episode.description)
    .where(Episode.character_id == bindparam("cid"), Episode.scene_index > bindparam("after"))
    .order_by(Episode.scene_index)
)
_KINDS_SINCE_SUMMARY = (
    select(Episode.kind)
    .where(
        Episode.character_id == bindparam("cid"),
        Episode.scene_index
        > select(func.coalesce(func.max(Summary.up_to_scene), 0))
        .where(Summary.character_id == bindparam("cid"))
        .scalar_subquery(),
    )
    .order_by(Episode.scene_index)
)
_LATEST_SUMMARY = (
    select(Summary)
    .where(Summary.character_id == bindparam("cid"))
    .order_by(Summary.up_to_scene.desc())
    .limit(1)
)


# ---- helpers -----------------------------------------------------------------------------------------------------


def _page_size(n: int) -> int:
    if n < 0:
        raise InvalidInput("page_size must be >= 0")
    return min(n or 50, MAX_PAGE)


async def _loaded(session: AsyncSession, obj: Any) -> Any:
    if session.sync_session.expire_on_commit:
        await session.refresh(obj)
    return obj


def _clean_tags(tags: Mapping[str, Sequence[str]] | None, what: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for cat, names in (tags or {}).items():
        if cat not in TAG_CATEGORIES:
            raise InvalidInput(f"{what}: unknown tag category '{cat}' (one of {', '.join(TAG_CATEGORIES)})")
        if isinstance(names, str):
            names = [names]
        vals = [str(n).strip() for n in names if str(n).strip()]
        if vals:
            out[cat] = vals
    return out


# ---- characters --------------------------------------------------------------------------------------------------


async def create_character(
    session: AsyncSession,
    *,
    owner_id: str,
    name: str,
    consent_given: bool,
    description: str = "",
    sheet: Mapping[str, Any] | None = None,
    encoder: str = "",
    identity_dim: int = 0,
    ref_image_refs: Sequence[Any] = (),
    status: str = STATUS_READY,
    status_reasons: Sequence[str] = (),
    character_id: str | None = None,
    reference_quality: Sequence[Mapping[str, Any]] = (),
) -> Character:
    """A new character. Without consent: `PreconditionFailed`."""
    if not consent_given:
        raise PreconditionFailed("consent is required to create a character from reference images")
    if not owner_id:
        raise InvalidInput("owner_id is required")
    if not name or not name.strip():
        raise InvalidInput("name is required")
    if status not in (STATUS_READY, STATUS_NEEDS_MORE_REFS):
        raise InvalidInput(f"unknown status '{status}'")
    now = utcnow()
    ch = Character(
        id=character_id or str(uuid.uuid4()),
        owner_id=owner_id,
        name=name.strip(),
        description=description,
        sheet=dict(sheet or {}),
        consent_given=True,
        consent_at=now,
        status=status,
        status_reasons=list(status_reasons),
        encoder=encoder,
        identity_dim=identity_dim,
        ref_image_refs=list(ref_image_refs),
        reference_quality=[dict(q) for q in reference_quality],
        memory_version=1,
        episode_count=0,
        created_at=now,
        updated_at=now,
    )
    session.add(ch)
    try:
        await session.commit()
    except IntegrityError as e:
        await session.rollback()
        from idlock.errors import AlreadyExists

        raise AlreadyExists(f"character {ch.id} already exists") from e
    return await _loaded(session, ch)


async def get_character(
    session: AsyncSession, character_id: str, *, owner_id: str | None = None
) -> Character:
    """The character; `NotFound` when missing or (with owner_id) owned by someone else."""
    ch = await session.get(Character, character_id, populate_existing=True)
    if ch is None or (owner_id is not None and ch.owner_id != owner_id):
        raise NotFound(f"character {character_id} not found")
    return ch


async def list_characters(
    session: AsyncSession, owner_id: str, *, page_size: int = 50, page_token: str = ""
) -> tuple[list[Character], str]:
    """The owner's characters, newest first; returns (page, next_page_token or "")."""
    n = _page_size(page_size)
    q = select(Character).where(Character.owner_id == owner_id)
    if page_token:
        t = decode_token(page_token)
        try:
            c_at = datetime.fromisoformat(t["c"])
            c_id = str(t["i"])
        except (KeyError, ValueError, TypeError) as e:
            raise InvalidInput("page_token is not valid") from e
        q = q.where(or_(Character.created_at < c_at, and_(Character.created_at == c_at, Character.id < c_id)))
    q = q.order_by(Character.created_at.desc(), Character.id.desc()).limit(n + 1)
    rows = list((await session.execute(q)).scalars())
    nxt = ""
    if len(rows) > n:
        rows = rows[:n]
        last = rows[-1]
        nxt = encode_token({"c": last.created_at.isoformat(), "i": last.id})
    return rows, nxt


async def update_sheet(
    session: AsyncSession,
    character_id: str,
    sheet: Mapping[str, Any],
    *,
    name: str | None = None,
    description: str | None = None,
    owner_id: str | None = None,
) -> Character:
    """Replace the character sheet (and optionally name/description); bumps the memory version."""
    ch = await get_character(session, character_id, owner_id=owner_id)
    ch.sheet = dict(sheet)
    if name is not None:
        if not strip_control(name):
            raise InvalidInput("name must not be empty")
        ch.name = strip_control(name)
    if description is not None:
        ch.description = strip_format(description)
    ch.memory_version = ch.memory_version + 1
    ch.updated_at = utcnow()
    await session.commit()
    return await _loaded(session, ch)


async def set_identity(
    session: AsyncSession,
    character_id: str,
    *,
    status: str,
    status_reasons: Sequence[str] = (),
    encoder: str | None = None,
    identity_dim: int | None = None,
    ref_image_refs: Sequence[str] | None = None,
) -> Character:
    """Record the outcome of identity extraction; bumps the memory version."""
    if status not in (STATUS_READY, STATUS_NEEDS_MORE_REFS):
        raise InvalidInput(f"unknown status '{status}'")
    ch = await get_character(session, character_id)
    ch.status = status
    ch.status_reasons = list(status_reasons)
    if encoder is not None:
        ch.encoder = encoder
    if identity_dim is not None:
        ch.identity_dim = identity_dim
    if ref_image_refs is not None:
        ch.ref_image_refs = list(ref_image_refs)
    ch.memory_version = ch.memory_version + 1
    ch.updated_at = utcnow()
    await session.commit()
    return await _loaded(session, ch)


async def delete_character(
    session: AsyncSession, character_id: str, *, must_exist: bool = True
) -> dict[str, int]:
    """Delete the character's rows (summaries, episodes, the character); `NotFound` when missing, unless
    `must_exist` is False (an erasure taken up again after its rows went)."""
    if must_exist:
        await get_character(session, character_id)
    await session.execute(delete(StoryFold).where(StoryFold.character_id == character_id))
    s = await session.execute(delete(Summary).where(Summary.character_id == character_id))
    e = await session.execute(delete(Episode).where(Episode.character_id == character_id))
    c = await session.execute(delete(Character).where(Character.id == character_id))
    shared = await _forget_in_scenes(session, character_id)
    await session.commit()
    session.expunge_all()
    return {
        "summaries": s.rowcount or 0,
        "episodes": e.rowcount or 0,
        "characters": c.rowcount or 0,
        "scenes_shared": shared,
    }


async def _forget_in_scenes(session: AsyncSession, character_id: str) -> int:
    """Other characters' scenes this one was in: it leaves their cast, and their image (its face is in it, and
    the orchestrator erases the job's objects) is dropped; the scene's text and state stay theirs."""
    q = select(Episode).where(sa_cast(Episode.cast_members, Text).like(f'%"{character_id}"%'))
    rows = list((await session.execute(q)).scalars())
    for ep in rows:
        ep.cast_members = [m for m in ep.cast_members or () if m.get("character_id") != character_id]
        ep.result_refs = []
    return len(rows)


# ---- episodes ----------------------------------------------------------------------------------------------------


async def _episode_by_job(session: AsyncSession, character_id: str, job_id: str) -> Episode | None:
    return (
        await session.execute(_EPISODE_BY_JOB, {"cid": character_id, "job_id": job_id})
    ).scalar_one_or_none()


async def record_episode(
    session: AsyncSession,
    character_id: str,
    *,
    job_id: str,
    kind: str = "image",
    prompt: str = "",
    result_refs: Sequence[str] = (),
    face_embedding: Sequence[float] | None = None,
    idr_raw: float | None = None,
    idr_calibrated: float | None = None,
    tags_added: Mapping[str, Sequence[str]] | None = None,
    tags_removed: Mapping[str, Sequence[str]] | None = None,
    description: str = "",
    duration_s: float | None = None,
    dialogue: str = "",
    frame_idrs: Sequence[float | Mapping[str, Any]] = (),
    state_source: str = "",
    context: Mapping[str, Any] | None = None,
    provider_label: str = "",
    copy_check: Mapping[str, Any] | None = None,
    cast_members: Sequence[Mapping[str, Any]] | None = None,
    episode_id: str | None = None,
    retries: int = 8,
) -> tuple[Episode, bool]:
    """Append the scene; returns (episode, created).

    Idempotent on job_id: a second call with the same job id returns the existing episode (created=False) and adds
    no row. Scene indexes are 1, 2, 3, ... in commit order, also under concurrent calls: the character row's counter
    is bumped first in the transaction, which serialises writers (row lock on Postgres, write lock on SQLite).
    """
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}, not '{kind}'")
    if not job_id:
        raise InvalidInput("job_id is required")
    added = _clean_tags(tags_added, "tags_added")
    removed = _clean_tags(tags_removed, "tags_removed")
    emb = [float(x) for x in face_embedding] if face_embedding is not None else None

    existing = await _episode_by_job(session, character_id, job_id)
    if existing is not None:  # recorded before (a redelivered job): nothing to write
        return existing, False
    delay = 0.02
    for attempt in range(retries + 1):
        try:
            # bumping the counter first takes the character's lock (row lock on Postgres, write lock on SQLite), so
            # the look for this job's episode below cannot race another recording of it
            scene = (
                await session.execute(_NEXT_SCENE, {"cid": character_id, "now": utcnow()})
            ).scalar_one_or_none()
            if scene is None:
                await session.commit()  # nothing was written; commit keeps the session's objects loaded
                raise NotFound(f"character {character_id} not found")
            existing = await _episode_by_job(session, character_id, job_id)
            if existing is not None:  # a concurrent call recorded it while we waited for the lock
                await session.rollback()  # the counter stays as it was
                existing = await _episode_by_job(session, character_id, job_id)
                assert existing is not None
                return existing, False
            ep = Episode(
                id=episode_id or str(uuid.uuid4()),
                character_id=character_id,
                job_id=job_id,
                scene_index=scene,
                kind=kind,
                prompt=prompt,
                result_refs=list(result_refs),
                face_embedding=emb,
                idr_raw=idr_raw,
                idr_calibrated=idr_calibrated,
                tags_added=added,
                tags_removed=removed,
                description=description,
                duration_s=duration_s,
                dialogue=dialogue,
                frame_idrs=[dict(x) if isinstance(x, Mapping) else float(x) for x in frame_idrs],
                state_source=state_source,
                context=dict(context) if context else None,
                provider_label=provider_label,
                copy_check=dict(copy_check) if copy_check else None,
                cast_members=[dict(c) for c in cast_members] if cast_members else None,
                created_at=utcnow(),
            )
            session.add(ep)
            await session.commit()
            return await _loaded(session, ep), True
        except IntegrityError:
            await session.rollback()
            existing = await _episode_by_job(session, character_id, job_id)
            if existing is not None:
                return existing, False
            if attempt == retries:
                raise
        except OperationalError as e:  # SQLite "database is locked" under contention
            await session.rollback()
            if "locked" not in str(e).lower() or attempt == retries:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)
    raise AssertionError("unreachable")


async def get_episode(session: AsyncSession, episode_id: str) -> Episode:
    ep = await session.get(Episode, episode_id)
    if ep is None:
        raise NotFound(f"episode {episode_id} not found")
    return ep


async def list_history(
    session: AsyncSession, character_id: str, *, page_size: int = 50, page_token: str = ""
) -> tuple[list[Episode], str]:
    """The character's episodes, newest first; returns (page, next_page_token or "")."""
    await get_character(session, character_id)
    n = _page_size(page_size)
    q = select(Episode).where(Episode.character_id == character_id)
    if page_token:
        t = decode_token(page_token)
        if not isinstance(t.get("s"), int):
            raise InvalidInput("page_token is not valid")
        q = q.where(Episode.scene_index < t["s"])
    rows = list((await session.execute(q.order_by(Episode.scene_index.desc()).limit(n + 1))).scalars())
    nxt = ""
    if len(rows) > n:
        rows = rows[:n]
        nxt = encode_token({"s": rows[-1].scene_index})
    return rows, nxt


async def recent_episodes(session: AsyncSession, character_id: str, limit: int) -> list[Episode]:
    """The latest `limit` episodes, newest first."""
    if limit <= 0:
        return []
    return list((await session.execute(_RECENT, {"cid": character_id, "limit": limit})).scalars())


async def episodes_by_scene(session: AsyncSession, character_id: str, scenes: Sequence[int]) -> list[Episode]:
    if not scenes:
        return []
    return list((await session.execute(_BY_SCENE, {"cid": character_id, "scenes": list(scenes)})).scalars())


async def stored_fold(session: AsyncSession, character_id: str) -> StoryFold | None:
    return await session.get(StoryFold, character_id)


async def store_fold(session: AsyncSession, character_id: str, fold: Mapping[str, Any]) -> bool:
    """Keep the character's story fold (a newer one than stored only); False when the character is gone."""
    if await session.get(Character, character_id) is None:
        return False
    row = await session.get(StoryFold, character_id)
    if row is None:
        session.add(StoryFold(character_id=character_id, last_scene=fold["last"], fold=dict(fold)))
    elif row.last_scene < fold["last"]:
        row.last_scene, row.fold, row.updated_at = fold["last"], dict(fold), utcnow()
    await session.commit()
    return True


async def scene_tags(session: AsyncSession, character_id: str, after_scene: int = 0) -> list[SceneTags]:
    """The episodes' tags and text after `after_scene` (all by default), oldest first, for `state.compute_state`."""
    rows = await session.execute(_SCENE_TAGS, {"cid": character_id, "after": after_scene})
    return [
        SceneTags(
            r.scene_index,
            dict(r.tags_added or {}),
            dict(r.tags_removed or {}),
            " ".join(x for x in (r.prompt, r.description) if x),
        )
        for r in rows.all()
    ]


async def episode_kinds_since_summary(session: AsyncSession, character_id: str) -> list[str]:
    """Kinds of the episodes after the latest summary (all when none), oldest first, in one round trip: the
    consolidation trigger runs on every recorded episode and is rarely due."""
    return list((await session.execute(_KINDS_SINCE_SUMMARY, {"cid": character_id})).scalars())


async def count_episodes(session: AsyncSession, character_id: str) -> int:
    q = select(func.count()).select_from(Episode).where(Episode.character_id == character_id)
    return int((await session.execute(q)).scalar_one())


# ---- summaries ---------------------------------------------------------------------------------------------------


async def latest_summary(session: AsyncSession, character_id: str) -> Summary | None:
    return (await session.execute(_LATEST_SUMMARY, {"cid": character_id})).scalar_one_or_none()


async def add_summary(
    session: AsyncSession,
    character_id: str,
    *,
    up_to_scene: int,
    text: str,
    engine: str,
    fallback_reason: str | None = None,
) -> Summary:
    """Store a story-so-far summary (idempotent per (character, up_to_scene)); bumps the memory version."""
    q = select(Summary).where(Summary.character_id == character_id, Summary.up_to_scene == up_to_scene)
    existing = (await session.execute(q)).scalar_one_or_none()
    if existing is not None:
        return existing
    s = Summary(
        character_id=character_id,
        up_to_scene=up_to_scene,
        text=text,
        engine=engine,
        fallback_reason=fallback_reason,
        created_at=utcnow(),
    )
    session.add(s)
    await session.execute(
        update(Character)
        .where(Character.id == character_id)
        .values(memory_version=Character.memory_version + 1)
        .execution_options(synchronize_session=False)
    )
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        existing = (await session.execute(q)).scalar_one_or_none()
        if existing is None:
            raise
        return existing
    return await _loaded(session, s)
