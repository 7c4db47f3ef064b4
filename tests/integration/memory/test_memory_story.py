"""The three-scene story end to end over the core modules: SQLite repository, Qdrant local mode, text embeddings,
prompt cache, template and LLM engines (fake Groq server with the real client), consolidation."""

import asyncio
import contextlib
import time

import numpy as np
import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from idlock.errors import InvalidInput
from services.memory import repository as repo
from services.memory.cache import InMemoryPromptCache
from services.memory.consolidation import ConsolidationPolicy
from services.memory.context import ContextConfig, load_context, record_scene
from services.memory.llm import NO_KEY_REASON, GroqLlm, LlmConfig
from services.memory.models import Base
from services.memory.prompt import CONSTRAINT_LINES, MANDATORY_NEGATIVE_TOKENS
from services.memory.state import StateCache, compute_state
from services.memory.text_embed import HashingTextEmbedder
from services.memory.vectors import MemoryVectors
from tests.fakes.groq_server import FakeGroqServer

SHEET = {
    "name": "Aria",
    "face_description": "oval face",
    "hair": "short silver hair",
    "eyes": "green eyes",
    "distinctive_marks": ["mole above left eyebrow"],
    "semantic_tags": ["knight"],
    "must_keep": ["green eyes", "short silver hair"],
}
SCENES = [
    {
        "job_id": "job-1",
        "prompt": "Aria in battle armour raises her sword at the castle gate",
        "tags_added": {"clothing": ["battle armor"], "props": ["sword"], "setting": ["castle gate"]},
    },
    {
        "job_id": "job-2",
        "prompt": "A duel in the forest",
        "description": "a blade leaves a cut on her left cheek",
        "tags_added": {"injuries": ["cut on left cheek"], "setting": ["forest"]},
    },
    {
        "job_id": "job-3",
        "prompt": "Back at camp Aria removes the armour and sits by the fire",
        "tags_added": {"setting": ["camp"]},
    },
]


@contextlib.contextmanager
def statements(engine):
    """The SQL statements run on `engine` inside the block (the hot paths' round trips)."""
    seen: list[str] = []

    def on_execute(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)


def unit(seed, dim=128):
    v = np.random.default_rng(seed).normal(size=dim)
    return v / np.linalg.norm(v)


@pytest.fixture
async def env(tmp_path):
    # the models' schema "memory" is translated away on SQLite (idlock.db does the same)
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}").execution_options(
        schema_translate_map={"memory": None}
    )
    async with engine.begin() as c:
        await c.run_sync(Base.metadata.create_all)
    sm = async_sessionmaker(engine, expire_on_commit=False)
    sm.engine = engine  # for counting statements
    vectors = MemoryVectors.edge(str(tmp_path / "vectors"), prefix="t")
    yield sm, vectors
    await vectors.close()
    await engine.dispose()


async def make_character(sm, vectors):
    async with sm() as s:
        ch = await repo.create_character(
            s, owner_id="u1", name="Aria", consent_given=True, sheet=SHEET, encoder="dlib", identity_dim=128
        )
    await vectors.upsert_semantic(ch.id, "u1", "dlib", unit(0))
    return ch.id


async def test_three_scene_story_context(env):
    sm, vectors = env
    emb = HashingTextEmbedder()
    cache = InMemoryPromptCache()
    cid = await make_character(sm, vectors)
    async with sm() as s:
        ch = await repo.get_character(s, cid)
        for i, sc in enumerate(SCENES, 1):
            t0 = time.perf_counter()
            with statements(sm.engine) as sql:
                r = await record_scene(
                    s, cid, vectors=vectors, embedder=emb, character=ch, face_embedding=unit(i).tolist(), **sc
                )
            wall = time.perf_counter() - t0
            assert r.created and r.episode.scene_index == i and r.summary is None
            # the text embedder ran: its time is reported, and is part of the call
            assert 0 < r.model_seconds < wall
            # job lookup, counter bump (returning the scene number), job re-check, insert, consolidation check:
            # the given character is not read again, and "not due" takes one query
            assert len(sql) == 5, sql
            assert not [q for q in sql if q.startswith("SELECT") and "characters.owner_id" in q]
            assert sum("summaries" in q for q in sql) == 1
        # replaying a job changes nothing
        r = await record_scene(s, cid, vectors=vectors, embedder=emb, **SCENES[0])
        assert not r.created and r.episode.scene_index == 1
        assert await vectors.count_character(cid) == 1 + 3 + 3
        # no embedder, no LLM: no model time
        r = await record_scene(s, cid, **SCENES[0])
        assert not r.created and r.model_seconds == 0.0

        walk = "Aria walks into the village at dawn, sword on her back"
        cfg = ContextConfig(recent_k=2, relevant_k=1)
        wiring = {"vectors": vectors, "embedder": emb, "config": cfg, "cache": cache}
        t0 = time.perf_counter()
        with statements(sm.engine) as sql:
            ctx = await load_context(s, cid, walk, **wiring)
        wall = time.perf_counter() - t0
    assert 0 < ctx.model_seconds < wall
    # character, scene tags (+ ids for local-mode relevance), recent episodes, summary, relevant episodes
    assert len(sql) == 5, sql
    # the rows read come back with the context, so callers need not read them again
    assert ctx.character.id == cid and ctx.character.memory_version == ctx.memory_version
    assert sorted(ctx.episodes) == [1, 2, 3]
    assert all(ctx.episodes[e.scene_index].id == e.id for e in (*ctx.recent, *ctx.relevant))
    assert ctx.state.names("props") == ["sword"]
    assert ctx.state.names("injuries") == ["cut on left cheek"]
    assert ctx.state.names("clothing") == []
    assert ctx.state.names("setting") == ["camp"]
    assert [e.scene_index for e in ctx.recent] == [3, 2]
    assert [e.scene_index for e in ctx.relevant] == [1]
    assert np.isclose(np.linalg.norm(ctx.merged_vector), 1.0)
    assert ctx.merged_vector @ unit(0) > ctx.merged_vector @ unit(3) > ctx.merged_vector @ unit(2) - 0.5
    p = ctx.prompt
    assert p.engine == "template" and p.fallback_reason == NO_KEY_REASON and not ctx.cache_hit
    current = p.sections["RECENT_STATE"].split("No longer present")[0]
    assert "sword (since scene 1)" in current and "cut on left cheek (since scene 2)" in current
    assert "armour" not in current
    assert "No longer present: battle armour (clothing, ended in scene 3)" in p.prompt
    assert "Relevant earlier scenes:\n- Scene 1:" in p.prompt
    assert all(t in p.negative_prompt for t in MANDATORY_NEGATIVE_TOKENS)

    async with sm() as s:
        again = await load_context(s, cid, walk, **wiring)
    # no LLM: the same template is composed again, and nothing is looked up in or written to the cache
    assert not again.cache_hit and again.prompt.prompt == p.prompt and len(cache) == 0

    with pytest.raises(InvalidInput, match="'dragon'"):
        async with sm() as s:
            await load_context(s, cid, "a Dragon attacks", config=ContextConfig(deny_list=("dragon",)))

    # erasure: rows and vectors of the character
    async with sm() as s:
        await repo.delete_character(s, cid)
    assert await vectors.delete_character(cid) == 7


async def test_an_episode_is_indexed_only_once_its_row_has_committed(env, monkeypatch):
    """A record whose commit fails leaves no vector behind (the episode id it would carry is in no row); one whose
    index write fails has its row, and the replay of the same job indexes it."""
    sm, vectors = env
    emb = HashingTextEmbedder()
    cid = await make_character(sm, vectors)
    scene = {**SCENES[0], "face_embedding": unit(1).tolist()}

    async def refused(*_a, **_k):
        await asyncio.sleep(0.05)  # a commit that takes its time (a server's round trip), then fails
        raise RuntimeError("commit refused")

    async with sm() as s:
        monkeypatch.setattr(s, "commit", refused)
        with pytest.raises(RuntimeError, match="commit refused"):
            await record_scene(s, cid, vectors=vectors, embedder=emb, **scene)
        await s.rollback()
    assert await vectors.count_character(cid) == 1  # the character's own vector only
    async with sm() as s:
        assert await repo.count_episodes(s, cid) == 0

    real_upsert = vectors.upsert_episode_face

    async def unavailable(*_a, **_k):
        raise ConnectionError("vector store unavailable")

    monkeypatch.setattr(vectors, "upsert_episode_face", unavailable)
    async with sm() as s:
        with pytest.raises(ConnectionError):
            await record_scene(s, cid, vectors=vectors, embedder=emb, **scene)
    monkeypatch.setattr(vectors, "upsert_episode_face", real_upsert)
    async with sm() as s:
        [ep] = await repo.recent_episodes(s, cid, 5)
        again = await record_scene(s, cid, vectors=vectors, embedder=emb, **scene)
    assert not again.created and again.episode.id == ep.id
    [hit] = await vectors.search_episode_faces(cid, "dlib", unit(1))
    assert hit.payload["episode_id"] == ep.id
    assert await vectors.count_character(cid) == 1 + 1 + 1


async def test_llm_engine_cache_and_consolidation(env):
    sm, vectors = env
    cid = await make_character(sm, vectors)
    with FakeGroqServer() as fake:
        good = (
            "Aria, green eyes, short silver hair, village at dawn. "
            + " ".join(CONSTRAINT_LINES)
            + " Negative tokens: "
            + ", ".join(MANDATORY_NEGATIVE_TOKENS)
        )
        fake.reply(good)
        llm = GroqLlm(LlmConfig(api_key="k", base_url=fake.base_url, model="m", max_retries=1, timeout_s=5))
        cache = InMemoryPromptCache()
        cfg = ContextConfig(consolidation=ConsolidationPolicy(every_images=5, every_videos=3))
        async with sm() as s:
            fake.delay_s = 0.2  # the provider's time is model time
            ctx = await load_context(s, cid, "village at dawn", llm=llm, cache=cache, config=cfg)
            assert ctx.prompt.engine == "llm" and ctx.prompt.prompt == good and not ctx.cache_hit
            assert 0.2 <= ctx.model_seconds < 2
            ctx2 = await load_context(s, cid, "village at dawn", llm=llm, cache=cache, config=cfg)
            assert ctx2.cache_hit and ctx2.prompt.engine == "llm" and fake.calls == 1
            assert ctx2.model_seconds == 0.0  # answered from the cache
            fake.delay_s = 0.0
            # a failing LLM: template, labelled, and not cached
            fake.fail_always(503)
            ctx3 = await load_context(s, cid, "village at noon", llm=llm, cache=cache, config=cfg)
            assert ctx3.prompt.engine == "template" and "HTTP 503" in ctx3.prompt.fallback_reason
            assert len(cache) == 1

            # consolidation: 5 images -> one summary by the LLM
            fake.reply("Aria fought five battles and kept her sword.")
            fake.delay_s = 0.2
            summaries, model_s = [], []
            for i in range(5):
                r = await record_scene(
                    s,
                    cid,
                    job_id=f"img-{i}",
                    prompt=f"battle {i}",
                    llm=llm,
                    config=cfg,
                    tags_added={"props": ["sword"]},
                )
                summaries.append(r.summary)
                model_s.append(r.model_seconds)
            fake.delay_s = 0.0
            assert summaries[:4] == [None] * 4
            # only the summariser (no embedder here) counts, on the record that consolidated
            assert model_s[:4] == [0.0] * 4 and 0.2 <= model_s[4] < 2
            assert summaries[4].engine == "llm" and summaries[4].up_to_scene == 5
            assert "five battles" in summaries[4].text
            # 3 videos -> one digest summary when no LLM
            out = []
            for i in range(3):
                r = await record_scene(
                    s, cid, job_id=f"vid-{i}", kind="video", prompt=f"chase {i}", config=cfg
                )
                out.append(r.summary)
            assert out[:2] == [None, None]
            assert out[2].engine == "digest" and out[2].fallback_reason == "no llm configured"
            assert (
                out[2].up_to_scene == 8 and "five battles" in out[2].text and "scene 8 (video)" in out[2].text
            )
            latest = await repo.latest_summary(s, cid)
            assert latest.engine == "digest" and latest.up_to_scene == 8
            # the summary reaches the prompt
            ctx4 = await load_context(s, cid, "village at dusk", config=cfg)
            assert "Story so far: Aria fought five battles" in ctx4.prompt.prompt
        await llm.aclose()


async def test_overrides_sanitised_and_forced_consolidation(env):
    from services.memory.context import maybe_consolidate
    from services.memory.prompt import StyleOverrides

    sm, vectors = env
    cid = await make_character(sm, vectors)
    async with sm() as s:
        with pytest.raises(InvalidInput, match="style override contains the denied term 'gore'"):
            await load_context(
                s,
                cid,
                "a walk",
                overrides=StyleOverrides.from_strings(["lots of gore"]),
                config=ContextConfig(deny_list=("gore",)),
            )
        assert await maybe_consolidate(s, cid, force=True) is None  # no scenes yet
        await record_scene(s, cid, job_id="j1", prompt="a walk", state_source="heuristic")
        res = await maybe_consolidate(s, cid, force=True)
        assert res.engine == "digest" and res.up_to_scene == 1
        assert await maybe_consolidate(s, cid, force=True) is None  # nothing new since


UNSPIED_SCENE_TAGS = repo.scene_tags


def spy_scene_reads(monkeypatch) -> list[int]:
    """The `after_scene` of every read of a character's scene tags, in order."""
    read_after: list[int] = []

    async def spied(session, character_id, after_scene=0):
        read_after.append(after_scene)
        return await UNSPIED_SCENE_TAGS(session, character_id, after_scene)

    monkeypatch.setattr(repo, "scene_tags", spied)
    return read_after


async def test_a_kept_story_state_reads_and_replays_only_new_scenes(env, monkeypatch):
    sm, vectors = env
    cid = await make_character(sm, vectors)
    read_after = spy_scene_reads(monkeypatch)
    states = StateCache()
    for i, scene in enumerate(SCENES):
        async with sm() as s:
            await record_scene(s, cid, **scene)
            ctx = await load_context(s, cid, "Aria at dawn", states=states)
            whole = compute_state(await UNSPIED_SCENE_TAGS(s, cid))
        # the same state as replaying the whole story, read from the scenes after the last one it held
        assert ctx.state == whole and ctx.state.last_scene == i + 1
        assert read_after[-1] == i
    assert ctx.state.names("clothing") == [] and ctx.state.names("setting") == ["camp"]

    # an erased and rebuilt story (fewer scenes than the state held) is replayed from the start
    async with sm() as s:
        await repo.delete_character(s, cid)
    cid2 = await make_character(sm, vectors)
    states._folds[cid2] = states._folds[cid]
    async with sm() as s:
        await record_scene(s, cid2, **SCENES[1])
        ctx = await load_context(s, cid2, "Aria at dawn", states=states)
    assert read_after[-1] == 0 and ctx.state.names("setting") == ["forest"] and ctx.state.last_scene == 1


async def test_a_replica_new_to_a_character_starts_from_its_stored_fold(env, monkeypatch):
    """A fold stored by one replica (`StoryFold`) lets another, which never saw the character, replay only the
    scenes after it; the state is the whole replay's. Erasing the character erases the stored fold."""
    from services.memory.models import StoryFold

    sm, vectors = env
    cid = await make_character(sm, vectors)
    first = StateCache(store_every=2)
    for scene in SCENES[:3]:
        async with sm() as s:
            await record_scene(s, cid, **scene)
    async with sm() as s:
        await load_context(s, cid, "Aria at dawn", states=first)
        fold = first.due(cid)
        assert fold is not None and fold["last"] == 3
        assert await repo.store_fold(s, cid, fold)
        stale = {**fold, "last": 2}
        assert await repo.store_fold(s, cid, stale)  # an older fold does not replace a newer one
        assert (await repo.stored_fold(s, cid)).last_scene == 3
    for scene in SCENES[3:]:
        async with sm() as s:
            await record_scene(s, cid, **scene)

    read_after = spy_scene_reads(monkeypatch)
    other = StateCache(store_every=2)  # replicas share the spacing
    async with sm() as s:
        ctx = await load_context(s, cid, "Aria at dawn", states=other)
        whole = compute_state(await UNSPIED_SCENE_TAGS(s, cid))
    assert read_after == [3]  # only the scenes after the stored fold
    assert ctx.state == whole and ctx.state.last_scene == len(SCENES)
    # a story shorter than the spacing can have no stored fold: it is replayed without looking for one
    async with sm() as s:
        ctx = await load_context(s, cid, "Aria at dawn", states=StateCache(store_every=len(SCENES) + 2))
    assert read_after == [3, 0] and ctx.state == whole

    async with sm() as s:
        await repo.delete_character(s, cid)
        assert await s.get(StoryFold, cid) is None
        assert not await repo.store_fold(s, cid, fold)  # a late write for an erased character stores nothing
        assert await s.get(StoryFold, cid) is None


async def test_the_description_and_an_edited_sheet_reach_the_llm_and_its_prompt(env):
    sm, vectors = env
    cid = await make_character(sm, vectors)
    async with sm() as s:
        await repo.update_sheet(s, cid, SHEET, description="a knight sworn to the northern marches")
    with FakeGroqServer() as fake:
        fake.echo_user()  # the LLM keeps what it was given: its input is then the composed prompt
        llm = GroqLlm(LlmConfig(api_key="k", base_url=fake.base_url, model="m", max_retries=1, timeout_s=5))
        cache = InMemoryPromptCache()
        async with sm() as s:
            ctx = await load_context(s, cid, "Aria at the gate", llm=llm, cache=cache)
        sent = fake.requests[-1]["messages"][1]["content"]
        assert ctx.prompt.engine == "llm" and ctx.prompt.fallback_reason is None
        for text in (
            "a knight sworn to the northern marches",
            "short silver hair",
            "mole above left eyebrow",
        ):
            assert text in sent and text in ctx.prompt.prompt

        async with sm() as s:
            await repo.update_sheet(
                s, cid, {**SHEET, "hair": "long black braid", "must_keep": ["green eyes"]}
            )
            again = await load_context(s, cid, "Aria at the gate", llm=llm, cache=cache)
        assert not again.cache_hit and fake.calls == 2  # the edit bumped the memory version
        assert "long black braid" in again.prompt.prompt and "short silver hair" not in again.prompt.prompt
        await llm.aclose()
