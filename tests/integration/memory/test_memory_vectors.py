"""The memory collections on both vector engines: Qdrant Edge (the embedded default) and qdrant-client (the server
path's calls, run against its local mode): upsert / search / delete / count per character, reopening, erasure."""

import asyncio
import signal
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from idlock.errors import InvalidInput
from services.memory.vectors import MemoryVectors, point_id
from tests.metrics_probe import metrics_change

ROOT = Path(__file__).resolve().parents[3]


def unit(seed, dim=128):
    v = np.random.default_rng(seed).normal(size=dim)
    return v / np.linalg.norm(v)


ENGINES = {"edge": MemoryVectors.edge, "qdrant": MemoryVectors.qdrant_local}


@pytest.fixture(params=sorted(ENGINES))
def engine(request):
    return request.param


def open_vectors(engine: str, path) -> MemoryVectors:
    return ENGINES[engine](str(path), prefix="t")


@pytest.fixture
async def vs(tmp_path, engine):
    v = open_vectors(engine, tmp_path / "q")
    assert v.engine.name == engine
    yield v
    await v.close()


async def test_semantic_and_episodes_per_character(vs):
    a, b = "char-a", "char-b"
    sid = await vs.upsert_semantic(
        a, "u1", "dlib", unit(1), per_view=[unit(2), unit(3)], image_refs=["s3://r0", "s3://r1"]
    )
    assert sid == point_id("semantic", a)
    await vs.upsert_semantic(b, "u2", "dlib", unit(9))
    assert np.allclose(await vs.get_semantic(a, "dlib", 128), unit(1), atol=1e-5)
    assert await vs.get_semantic("nobody", "dlib", 128) is None
    for i in range(4):
        await vs.upsert_episode_face(a, "u1", f"ep{i}", i + 1, "dlib", unit(100 + i), ["s3://out"])
        await vs.upsert_episode_text(a, "u1", f"ep{i}", i + 1, "hashing", unit(200 + i, 384), f"scene {i}")
    await vs.upsert_episode_face(b, "u2", "epb", 1, "dlib", unit(101))
    # idempotent: recording the same episode again does not add a point
    await vs.upsert_episode_face(a, "u1", "ep1", 2, "dlib", unit(101))
    assert await vs.count_character(a) == 1 + 2 + 4 + 4
    hits = await vs.search_episode_faces(a, "dlib", unit(101), limit=2)
    assert hits[0].episode_id == "ep1" and hits[0].score > 0.99 and hits[0].vector is not None
    assert all(h.payload["character_id"] == a for h in hits)
    t = await vs.search_episode_text(a, "hashing", unit(202, 384), limit=3, exclude_scenes=[3])
    assert t and all(h.scene_index != 3 for h in t)
    # re-registering with fewer views drops the stale view
    await vs.upsert_semantic(a, "u1", "dlib", unit(1), per_view=[unit(2)])
    assert await vs.count_character(a) == 1 + 1 + 4 + 4
    assert await vs.delete_character(a) == 10
    assert await vs.count_character(a) == 0
    assert await vs.count_character(b) == 2
    assert await vs.search_episode_faces(a, "dlib", unit(101)) == []


async def test_dimension_checks(vs):
    await vs.upsert_semantic("c", "u", "arcface", unit(1, 512))
    with pytest.raises(InvalidInput):
        await vs.upsert_semantic("c", "u", "arcface", [float("nan")] * 512)
    assert await vs.search_episode_text("c", "hashing", unit(1, 384)) == []


async def test_text_search_follows_writes_and_survives_a_reopen(tmp_path, engine):
    path = tmp_path / "q"
    vs = open_vectors(engine, path)
    for i in range(3):
        await vs.upsert_episode_text("a", "u1", f"ep{i}", i + 1, "hashing", unit(300 + i, 384), f"scene {i}")
    await vs.upsert_episode_text("b", "u2", "epb", 1, "hashing", unit(301, 384), "other character")
    hits = await vs.search_episode_text("a", "hashing", unit(301, 384), limit=2)
    assert hits[0].episode_id == "ep1" and hits[0].score > 0.99 and len(hits) == 2
    assert all(h.payload["character_id"] == "a" for h in hits)

    # a re-recorded episode replaces its point instead of adding one
    await vs.upsert_episode_text("a", "u1", "ep3", 4, "hashing", unit(303, 384), "scene 3")
    await vs.upsert_episode_text("a", "u1", "ep0", 1, "hashing", unit(310, 384), "scene 0 again")
    hits = await vs.search_episode_text("a", "hashing", unit(303, 384), limit=10)
    assert hits[0].episode_id == "ep3" and len(hits) == 4
    assert next(h for h in hits if h.episode_id == "ep0").payload["text"] == "scene 0 again"
    hits = await vs.search_episode_text("a", "hashing", unit(303, 384), limit=10, exclude_scenes=[4, 2])
    assert sorted(h.scene_index for h in hits) == [1, 3]

    await vs.upsert_episode_texts_bulk("hashing", [("a", "u1", "ep9", 9, unit(309, 384), "bulk")])
    assert (await vs.search_episode_text("a", "hashing", unit(309, 384), limit=1))[0].episode_id == "ep9"

    # erasure forgets it; the other character is untouched
    await vs.delete_character("a")
    assert await vs.search_episode_text("a", "hashing", unit(303, 384), limit=3) == []
    assert (await vs.search_episode_text("b", "hashing", unit(301, 384)))[0].episode_id == "epb"
    await vs.close()

    # a new process reads what is stored
    again = open_vectors(engine, path)
    hits = await again.search_episode_text("b", "hashing", unit(301, 384))
    assert [h.episode_id for h in hits] == ["epb"]
    assert (await again.character_points("b"))[0][1]["text"] == "other character"
    await again.close()


def _files_holding(root, needle: bytes) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes())


async def test_an_erased_character_leaves_no_bytes_in_the_engine_files(tmp_path, engine):
    path = tmp_path / "q"
    vs = open_vectors(engine, path)
    secret, kept = "Zephyrine hides the astrolabe", "Orrin keeps the lantern"
    for i in range(40):
        await vs.upsert_episode_text("gone", "u1", f"g{i}", i + 1, "hashing", unit(i, 384), f"{secret} {i}")
    await vs.upsert_episode_text("kept", "u2", "k1", 1, "hashing", unit(99, 384), kept)
    await vs.upsert_episode_face("gone", "u1", "g1", 1, "dlib", unit(5), [f"s3://{secret}.png"])
    assert _files_holding(path, secret.encode()), "the scan must see stored payloads"
    assert await vs.delete_character("gone") == 41
    assert _files_holding(path, secret.encode()) == []
    assert _files_holding(path, kept.encode())
    assert (await vs.search_episode_text("kept", "hashing", unit(99, 384)))[0].episode_id == "k1"
    await vs.close()


async def test_qdrant_local_storage_commits_without_waiting_for_fsync(tmp_path):
    import sqlite3

    path = tmp_path / "q"
    vs = MemoryVectors.qdrant_local(str(path), prefix="t")
    await vs.upsert_episode_face("a", "u1", "ep1", 1, "dlib", unit(1), ["s3://out"])
    await vs.close()
    files = sorted(path.rglob("storage.sqlite"))
    assert files, "local mode wrote no storage file"
    for f in files:  # WAL is a property of the file: a new connection sees it
        with sqlite3.connect(f) as c:
            assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    # collections that already exist are tuned when they are opened again, and their points are there
    again = MemoryVectors.qdrant_local(str(path), prefix="t")
    collection = next(iter(again.engine._client._client.collections.values()))
    assert collection.storage.storage.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert (await again.search_episode_faces("a", "dlib", unit(1)))[0].episode_id == "ep1"
    await again.close()


async def test_the_edge_default_moves_an_earlier_local_mode_folder_into_its_shards(tmp_path):
    from services.memory.settings import MemorySettings

    older = MemoryVectors.qdrant_local(str(tmp_path / "qdrant"), prefix="idlock")
    await older.upsert_semantic("a", "u1", "dlib", unit(1), per_view=[unit(2)])
    await older.upsert_episode_text("a", "u1", "ep1", 1, "hashing", unit(3, 384), "scene 1")
    await older.close()

    settings = MemorySettings()
    assert settings.vector_engine == "edge" and not settings.qdrant_url
    vs = await MemoryVectors.open(settings, tmp_path)
    assert vs.engine.name == "edge" and (tmp_path / "vectors").is_dir()
    assert not (tmp_path / "qdrant").exists()  # moved: an erasure has one copy to erase
    assert np.allclose(await vs.get_semantic("a", "dlib", 128), unit(1), atol=1e-5)
    assert (await vs.search_episode_text("a", "hashing", unit(3, 384)))[0].episode_id == "ep1"
    assert await vs.count_character("a") == 3
    await vs.delete_character("a")
    await vs.close()
    again = await MemoryVectors.open(settings, tmp_path)  # not copied a second time
    assert await again.count_character("a") == 0
    await again.close()


async def test_point_reads_and_writes_are_timed_by_operation(vs):
    with metrics_change() as grew:
        await vs.upsert_semantic("char-m", "u1", "dlib", unit(1))
        await vs.upsert_episode_face("char-m", "u1", "ep1", 1, "dlib", unit(2), ["s3://out"])
        await vs.search_episode_faces("char-m", "dlib", unit(2), limit=3)
    assert grew("idlock_vector_seconds_count", op="upsert") == 2
    assert grew("idlock_vector_seconds_count", op="query_points") >= 1
    assert grew("idlock_vector_errors_total") == 0


async def test_an_edge_write_survives_a_killed_process(tmp_path):
    """A write is durable once it returns (the shard's log), though segments are flushed only now and then."""
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "libs")!r}]
        from services.memory.vectors import MemoryVectors

        async def main():
            vs = MemoryVectors.edge({str(tmp_path / "q")!r}, prefix="t")
            await vs.upsert_episode_face("a", "u1", "ep1", 1, "dlib", [1.0] + [0.0] * 127, ["s3://out"])
            await vs.upsert_episode_text("a", "u1", "ep1", 1, "hashing", [0.0, 1.0] + [0.0] * 382, "scene 1")
            os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == -signal.SIGKILL, stderr.decode()
    vs = MemoryVectors.edge(str(tmp_path / "q"), prefix="t")
    try:
        assert (await vs.search_episode_faces("a", "dlib", [1.0] + [0.0] * 127))[0].episode_id == "ep1"
        hits = await vs.search_episode_text("a", "hashing", [0.0, 1.0] + [0.0] * 382)
        assert hits[0].payload["text"] == "scene 1" and hits[0].score > 0.99
    finally:
        await vs.close()
