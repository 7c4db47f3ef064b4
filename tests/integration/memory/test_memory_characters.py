"""Character create/erase orchestration over real stores (SQLite via idlock.db, Qdrant local mode, objects on disk):
what is left behind when a step fails."""

from __future__ import annotations

import numpy as np
import pytest

from idlock.db import Database
from idlock.errors import InvalidInput, NotFound, PreconditionFailed
from idlock.images import encode_png
from idlock.settings import DatabaseSettings
from idlock.storage import LocalObjectStore
from services.memory import characters
from services.memory import repository as repo
from services.memory.cache import InMemoryPromptCache
from services.memory.models import SCHEMA_VERSION, Base
from services.memory.vectors import MemoryVectors


def _png() -> bytes:
    img = np.zeros((64, 64, 3), np.uint8)
    img[16:48, 16:48] = 200
    return encode_png(img)


def _unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=128)
    return (v / np.linalg.norm(v)).tolist()


@pytest.fixture
async def stores(tmp_path):
    db = Database.open(DatabaseSettings(url=""), service="memory", data_dir=tmp_path)
    await db.migrate(Base.metadata, version=SCHEMA_VERSION)
    store = LocalObjectStore(tmp_path / "objects")
    vectors = MemoryVectors.edge(str(tmp_path / "vectors"))
    yield db, store, vectors
    await vectors.close()
    await db.close()


def _encoded(vector=None, quality=None, inconsistent=()):
    async def encode():
        return characters.EncodedReferences(
            encoder="dlib",
            vector=vector if vector is not None else _unit(0),
            views=[_unit(0)],
            quality=quality if quality is not None else [{"index": 0, "accepted": True}],
            inconsistent_indices=list(inconsistent),
        )

    return encode


async def test_create_stores_refs_vectors_row_and_flags_weak_references(stores) -> None:
    db, store, vectors = stores
    q = [{"index": 0, "accepted": True, "too_small": True, "face_size_px": 60.0}]
    made = await characters.create_character(
        db.session,
        store,
        vectors,
        owner_id="u",
        name="A",
        consent_given=True,
        images=[_png()],
        encode=_encoded(quality=q),
    )
    ch = made.character
    assert made.created and ch.status == "needs_more_refs"
    assert ch.status_reasons == ["reference image 0: the face is small (60 px)"]
    assert await store.list(f"characters/{ch.id}/") == [f"characters/{ch.id}/ref_0.png"]
    assert ch.ref_image_refs[0]["width"] == 64 and ch.reference_quality == q
    assert await vectors.count_character(ch.id) == 2


async def test_a_failure_after_the_first_write_leaves_nothing(stores) -> None:
    db, store, vectors = stores
    called = []

    async def never():
        called.append(1)
        raise AssertionError("must not be called")

    with pytest.raises(PreconditionFailed, match="consent"):
        await characters.create_character(
            db.session,
            store,
            vectors,
            owner_id="u",
            name="A",
            consent_given=False,
            images=[_png()],
            encode=never,
        )
    with pytest.raises(InvalidInput, match="reference image 0"):
        await characters.create_character(
            db.session,
            store,
            vectors,
            owner_id="u",
            name="A",
            consent_given=True,
            images=[b"junk"],
            encode=never,
        )
    assert not called
    # the vector store refuses the identity after the reference was stored: the stored object is removed again
    with pytest.raises(InvalidInput, match="not finite"):
        await characters.create_character(
            db.session,
            store,
            vectors,
            owner_id="u",
            name="A",
            consent_given=True,
            images=[_png()],
            encode=_encoded(vector=[float("nan")] * 128),
            request_id="r1",
        )
    cid = characters.character_id_for("u", "r1")
    assert await store.list("characters/") == []
    assert await vectors.count_character(cid) == 0
    async with db.session() as s:
        with pytest.raises(NotFound):
            await repo.get_character(s, cid)


class BrokenCache(InMemoryPromptCache):
    async def delete_for_character(self, character_id: str) -> int:
        raise ConnectionError("kv bucket unreachable")


async def test_erasure_keeps_the_rows_when_a_store_fails_so_it_can_be_retried(stores) -> None:
    db, store, vectors = stores
    ch = (
        await characters.create_character(
            db.session,
            store,
            vectors,
            owner_id="u",
            name="A",
            consent_given=True,
            images=[_png()],
            encode=_encoded(),
        )
    ).character
    with pytest.raises(NotFound):
        await characters.erase_character(db.session, store, vectors, None, ch.id, owner_id="someone else")

    report = {
        r.store: r for r in await characters.erase_character(db.session, store, vectors, BrokenCache(), ch.id)
    }
    assert not report["prompt_cache"].ok and "kv bucket unreachable" in report["prompt_cache"].error
    assert not report["database"].ok and "retried" in report["database"].error
    assert report["vectors"].ok and report["vectors"].removed == 2
    assert report["objects"].ok and report["objects"].removed == 1
    async with db.session() as s:
        await repo.get_character(s, ch.id)  # still there

    report = {
        r.store: r
        for r in await characters.erase_character(db.session, store, vectors, InMemoryPromptCache(), ch.id)
    }
    assert all(r.ok for r in report.values())
    assert report["database"].removed == 1 and report["database"].details["characters"] == 1
    async with db.session() as s:
        with pytest.raises(NotFound):
            await repo.get_character(s, ch.id)
