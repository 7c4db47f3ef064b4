"""Memory repository on SQLite (a tmp file) and on Postgres when IDLOCK_TEST_POSTGRES_URL is set."""

import asyncio
import os

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from idlock.errors import InvalidInput, NotFound, PreconditionFailed
from services.memory import repository as repo
from services.memory.models import Base
from services.memory.state import compute_state

PG = os.environ.get("IDLOCK_TEST_POSTGRES_URL", "")


def _pg_url(u: str) -> str:
    for p in ("postgres://", "postgresql://"):
        if u.startswith(p):
            return "postgresql+asyncpg://" + u[len(p) :]
    return u


@pytest.fixture(params=["sqlite", "idlock-db", pytest.param("postgres", marks=pytest.mark.postgres)])
async def sm(request, tmp_path):
    if request.param == "idlock-db":  # the shared Database (WAL, foreign keys on, explicit BEGIN)
        from idlock.db import Database
        from idlock.settings import DatabaseSettings

        db = Database.open(DatabaseSettings(url=""), service="memory", data_dir=tmp_path)
        await db.migrate(Base.metadata, version=1)
        yield db.session
        await db.close()
        return
    if request.param == "sqlite":
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'memory.db'}")
    else:
        if not PG:
            pytest.skip("IDLOCK_TEST_POSTGRES_URL not set")
        engine = create_async_engine(_pg_url(PG))
    # the models' schema "memory" goes to the default schema here (idlock.db places it per backend)
    engine = engine.execution_options(schema_translate_map={"memory": None})
    async with engine.begin() as conn:
        if request.param == "postgres":
            await conn.run_sync(Base.metadata.drop_all)
        await conn.run_sync(Base.metadata.create_all)
    yield async_sessionmaker(engine, expire_on_commit=False)
    if request.param == "postgres":
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
    await engine.dispose()


async def new_char(s, owner="u1", name="Aria"):
    return await repo.create_character(
        s, owner_id=owner, name=name, consent_given=True, sheet={"name": name, "eyes": "green eyes"}
    )


async def test_characters_crud_and_pages(sm):
    async with sm() as s:
        with pytest.raises(PreconditionFailed, match="consent"):
            await repo.create_character(s, owner_id="u1", name="X", consent_given=False)
        ids = [(await new_char(s, name=f"c{i}")).id for i in range(5)]
        await new_char(s, owner="u2")
        ch = await repo.get_character(s, ids[0])
        assert ch.consent_given and ch.consent_at is not None and ch.memory_version == 1
        with pytest.raises(NotFound):
            await repo.get_character(s, "missing")
        with pytest.raises(NotFound):
            await repo.get_character(s, ids[0], owner_id="u2")
        seen, tok = [], ""
        while True:
            page, tok = await repo.list_characters(s, "u1", page_size=2, page_token=tok)
            seen += [c.id for c in page]
            if not tok:
                break
        assert sorted(seen) == sorted(ids) and len(seen) == 5
        with pytest.raises(InvalidInput):
            await repo.list_characters(s, "u1", page_token="%%%")
        ch = await repo.update_sheet(s, ids[0], {"name": "Aria", "hair": "silver"}, description="knight")
        assert ch.memory_version == 2 and ch.sheet["hair"] == "silver" and ch.description == "knight"


async def test_episodes_idempotent_history_and_delete(sm):
    async with sm() as s:
        ch = await new_char(s)
        e1, c1 = await repo.record_episode(
            s,
            ch.id,
            job_id="job-1",
            prompt="in armour with a sword",
            tags_added={"clothing": ["armour"], "props": ["sword"]},
            face_embedding=[0.1, 0.2],
            idr_raw=0.9,
            idr_calibrated=0.8,
        )
        again, c2 = await repo.record_episode(s, ch.id, job_id="job-1", prompt="other")
        assert c1 and not c2 and again.id == e1.id and again.prompt == "in armour with a sword"
        await repo.record_episode(s, ch.id, job_id="job-2", tags_added={"injuries": ["cut on left cheek"]})
        await repo.record_episode(
            s,
            ch.id,
            job_id="job-3",
            kind="video",
            prompt="she removes the armour",
            duration_s=4.0,
            frame_idrs=[0.8, 0.7],
            dialogue="Enough.",
        )
        assert await repo.count_episodes(s, ch.id) == 3
        with pytest.raises(InvalidInput):
            await repo.record_episode(s, ch.id, job_id="job-4", kind="gif")
        with pytest.raises(InvalidInput):
            await repo.record_episode(s, ch.id, job_id="job-4", tags_added={"weather": ["rain"]})
        with pytest.raises(NotFound):
            await repo.record_episode(s, "missing", job_id="job-x")
        page, tok = await repo.list_history(s, ch.id, page_size=2)
        assert [e.scene_index for e in page] == [3, 2] and tok
        page2, tok2 = await repo.list_history(s, ch.id, page_size=2, page_token=tok)
        assert [e.scene_index for e in page2] == [1] and tok2 == ""
        st = compute_state(await repo.scene_tags(s, ch.id))
        assert st.names("props") == ["sword"] and st.names("clothing") == []
        assert [t.scene_index for t in await repo.scene_tags(s, ch.id, after_scene=1)] == [2, 3]
        assert (await repo.get_character(s, ch.id)).memory_version == 4
        # the consolidation trigger counts from the latest summary (all scenes before any)
        assert await repo.episode_kinds_since_summary(s, ch.id) == ["image", "image", "video"]
        await repo.add_summary(s, ch.id, up_to_scene=1, text="first", engine="digest")
        assert await repo.episode_kinds_since_summary(s, ch.id) == ["image", "video"]
        summ = await repo.add_summary(s, ch.id, up_to_scene=3, text="so far", engine="digest")
        assert (await repo.latest_summary(s, ch.id)).id == summ.id
        assert await repo.episode_kinds_since_summary(s, ch.id) == []
        counts = await repo.delete_character(s, ch.id)
        assert counts == {"summaries": 2, "episodes": 3, "characters": 1, "scenes_shared": 0}
        with pytest.raises(NotFound):
            await repo.get_character(s, ch.id)


async def test_concurrent_scene_indexes(sm):
    async with sm() as s:
        ch = await new_char(s)

    async def rec(job):
        async with sm() as s2:
            ep, created = await repo.record_episode(s2, ch.id, job_id=job, prompt=job)
            return ep.scene_index, created

    jobs = [f"job-{i}" for i in range(8)] + ["job-0", "job-1", "job-0"]
    res = await asyncio.gather(*(rec(j) for j in jobs))
    created = sorted(si for si, c in res if c)
    assert created == list(range(1, 9))
    async with sm() as s:
        assert await repo.count_episodes(s, ch.id) == 8
        hist, _ = await repo.list_history(s, ch.id, page_size=100)
        assert sorted(e.job_id for e in hist) == sorted(set(jobs))
        assert [e.scene_index for e in hist] == list(range(8, 0, -1))
