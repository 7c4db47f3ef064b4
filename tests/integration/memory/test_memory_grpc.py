"""The memory service over gRPC with a real identity service beside it (both on port 0, in this process), a real
nats-server (events + the prompt cache's KV bucket), Qdrant local mode and object storage on disk.

The database runs on SQLite always, and on Postgres (a schema of its own) when IDLOCK_TEST_POSTGRES_URL is set.
Every store is checked directly: the database through its own connection, Qdrant through its local-mode files,
objects on disk, cache keys in the NATS KV bucket, events in the EVENTS stream.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import nats
import numpy as np
import pytest
from skimage import data as skdata
from sqlalchemy import func, select

from idlock import subjects
from idlock.bus import decode
from idlock.db import Database
from idlock.images import encode_png
from idlock.settings import DatabaseSettings
from idlock.v1 import common_pb2, events_pb2
from idlock.v1 import memory_service_pb2 as pb
from idlock.v1 import memory_service_pb2_grpc as pb_grpc
from services.memory.cache import CacheKey, NatsKvPromptCache, character_token
from services.memory.erasure import record_erasure
from services.memory.models import Character, Episode, Erasure, Summary
from services.memory.prompt import ComposedPrompt
from services.memory.vectors import MemoryVectors
from tests.harness import serving

POSTGRES_ENV = "IDLOCK_TEST_POSTGRES_URL"
OWNER = "owner-1"
SHEET = pb.CharacterSheet(
    face_description="oval face",
    hair="short dark hair",
    eyes="brown eyes",
    distinctive_marks=["beauty mark on the left cheek"],
    semantic_tags=["astronaut"],
    must_keep_traits=["brown eyes"],
)
STORY = [
    pb.Episode(
        job_id="job-1",
        prompt="Eileen in battle armour raises her sword at the castle gate",
        tags=common_pb2.StateTags(clothing=["battle armor"], props=["sword"], setting=["castle gate"]),
    ),
    pb.Episode(
        job_id="job-2",
        prompt="A duel in the forest",
        description="a blade leaves a cut on her left cheek",
        tags=common_pb2.StateTags(injuries=["cut on left cheek"], setting=["forest"]),
    ),
    pb.Episode(
        job_id="job-3",
        prompt="Back at camp she removes the armour and sits by the fire",
        tags=common_pb2.StateTags(setting=["camp"]),
    ),
]


def _png(rgb: np.ndarray) -> bytes:
    return encode_png(rgb)


@pytest.fixture(scope="module")
def astronaut_png() -> bytes:
    return _png(skdata.astronaut())


@pytest.fixture(scope="module")
def sky_png() -> bytes:
    sky = np.zeros((256, 256, 3), np.uint8)
    sky[:] = (90, 140, 220)
    return _png(sky)


async def _consenting(stub: pb_grpc.MemoryServiceStub, name: str, png: bytes) -> pb.Character:
    """A character created with consent from one reference photo."""
    request = pb.CreateCharacterRequest(
        owner_id=OWNER, name=name, consent_given=True, reference_images=[_img(png)]
    )
    return (await stub.CreateCharacter(request)).character


def _img(data: bytes) -> common_pb2.ImageInput:
    return common_pb2.ImageInput(data=data)


async def _fails(call, code: grpc.StatusCode, *fragments: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, (err.value.code(), err.value.details())
    for f in fragments:
        assert f in err.value.details(), err.value.details()
    return err.value.details()


# ---- the services -----------------------------------------------------------------------------------------------


@dataclass
class Mesh:
    stub: pb_grpc.MemoryServiceStub
    data_dir: Path
    db_url: str
    db_schema: str | None
    nats_url: str
    kv_bucket: str
    address: str

    # direct views of each store
    async def rows(self, character_id: str) -> dict[str, int]:
        db = Database.open(
            DatabaseSettings(url=self.db_url), service="memory", data_dir=self.data_dir, schema=self.db_schema
        )
        try:
            async with db.session() as s:
                out = {}
                for name, model, col in (
                    ("characters", Character, Character.id),
                    ("episodes", Episode, Episode.character_id),
                    ("summaries", Summary, Summary.character_id),
                ):
                    q = select(func.count()).select_from(model).where(col == character_id)
                    out[name] = (await s.execute(q)).scalar_one()
                return out
        finally:
            await db.close()

    async def owner_rows(self, owner_id: str) -> int:
        db = Database.open(
            DatabaseSettings(url=self.db_url), service="memory", data_dir=self.data_dir, schema=self.db_schema
        )
        try:
            async with db.session() as s:
                q = select(func.count()).select_from(Character).where(Character.owner_id == owner_id)
                return (await s.execute(q)).scalar_one()
        finally:
            await db.close()

    async def vector_points(self, character_id: str | None = None) -> list[tuple[str, dict]]:
        """(collection, payload) of the points in the vector engine's files, optionally of one character: a copy of
        the service's folder (Qdrant Edge shards, or local mode's) opened apart from the service."""
        out = []
        for folder, open_copy in (("vectors", MemoryVectors.edge), ("qdrant", MemoryVectors.qdrant_local)):
            if not (self.data_dir / folder).is_dir():
                continue
            copy = Path(tempfile.mkdtemp()) / folder
            shutil.copytree(self.data_dir / folder, copy, ignore=shutil.ignore_patterns(".lock"))
            vectors = open_copy(copy)
            try:
                out += await vectors.character_points(character_id)
            finally:
                await vectors.close()
                shutil.rmtree(copy.parent)
        return out

    def objects(self, character_id: str | None = None) -> list[Path]:
        root = self.data_dir / "objects" / "characters"
        if character_id is not None:
            root = root / character_id
        return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []

    async def written_cache_keys(self, character_id: str, wait_s: float = 5.0) -> list[str]:
        """Cache keys once the write-behind has landed (memory caches a prompt after answering), waiting at most
        `wait_s` for one."""
        for _ in range(int(wait_s / 0.05)):
            if keys := await self.cache_keys(character_id):
                return keys
            await asyncio.sleep(0.05)
        return []

    async def cache_llm_prompt(self, character_id: str) -> None:
        """An LLM-formatted prompt of the character in the cache, as memory writes one with an LLM configured."""
        nc = await nats.connect(self.nats_url)
        try:
            cache = await NatsKvPromptCache.open(nc.jetstream(), self.kv_bucket)
            key = CacheKey(character_id, 1, "template-hash", "", "groq:m")
            await cache.put(key, ComposedPrompt(prompt="P", negative_prompt="N", engine="llm"))
        finally:
            await nc.close()

    async def cache_keys(self, character_id: str) -> list[str]:
        nc = await nats.connect(self.nats_url)
        try:
            kv = await nc.jetstream().key_value(self.kv_bucket)
            try:
                keys = await kv.keys()
            except Exception as e:
                if type(e).__name__ == "NoKeysError":
                    return []
                raise
            return [k for k in keys if k.startswith(character_token(character_id) + ".")]
        finally:
            await nc.close()


@pytest.fixture(scope="module")
async def identity_addr(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    async with serving("identity", tmp_path_factory.mktemp("identity")) as svc:
        yield svc.address


def _backend_params():
    """Database and vector engine: the embedded default on both databases, and the Qdrant server path's calls
    (qdrant-client, run against its local mode) on SQLite."""
    return ["sqlite", "sqlite-qdrant", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module", params=_backend_params())
async def mesh(request, identity_addr, nats_server, tmp_path_factory) -> AsyncIterator[Mesh]:
    data_dir = tmp_path_factory.mktemp(f"memory-{request.param}")
    schema = None
    url = ""
    engine = "qdrant" if request.param.endswith("-qdrant") else "edge"
    if request.param == "postgres":
        url = os.environ.get(POSTGRES_ENV, "")
        if not url:
            pytest.skip(f"{POSTGRES_ENV} not set")
        schema = f"t_{uuid.uuid4().hex[:12]}"
    bucket = f"prompts_{uuid.uuid4().hex[:8]}"
    env = {
        "IDLOCK_DATABASE_URL": url,
        "IDLOCK_MEMORY_DB_SCHEMA": schema or "",
        "IDLOCK_IDENTITY_ADDR": identity_addr,
        "IDLOCK_NATS_URL": nats_server.url,
        "IDLOCK_MEMORY_TEXT_EMBEDDER": "hashing",
        "IDLOCK_MEMORY_KV_BUCKET": bucket,
        "IDLOCK_MEMORY_GROQ_API_KEY": "",
        "IDLOCK_STORAGE_BACKEND": "local",
        "IDLOCK_MEMORY_VECTOR_ENGINE": engine,
    }
    async with serving("memory", data_dir, **env) as svc:
        yield Mesh(
            pb_grpc.MemoryServiceStub(svc.channel),
            data_dir,
            url,
            schema,
            nats_server.url,
            bucket,
            svc.address,
        )
    if schema:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def _create(mesh: Mesh, png: bytes, *, owner: str = OWNER, request_id: str = "", name: str = "Eileen"):
    return await mesh.stub.CreateCharacter(
        pb.CreateCharacterRequest(
            owner_id=owner,
            name=name,
            description="an astronaut",
            sheet=SHEET,
            consent_given=True,
            reference_images=[_img(png)],
            request_id=request_id,
        )
    )


async def _events(nats_url: str, subject: str, character_id: str, timeout_s: float = 10.0) -> list:
    """Messages on `subject` in the EVENTS stream that name the character."""
    nc = await nats.connect(nats_url)
    found = []
    try:
        js = nc.jetstream()
        sub = await js.subscribe(subject, ordered_consumer=True)
        try:
            async with asyncio.timeout(timeout_s):
                while not found:
                    msg = await sub.next_msg(timeout=timeout_s)
                    event = decode(msg)
                    if event.character_id == character_id:
                        found.append((msg, event))
        except TimeoutError:
            pass
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()
    return found


# ---- tests ------------------------------------------------------------------------------------------------------


async def test_create_is_ready_with_identity_and_owner_scoped(mesh: Mesh, astronaut_png: bytes) -> None:
    res = await _create(mesh, astronaut_png, request_id=f"req-{uuid.uuid4().hex[:6]}")
    ch = res.character
    assert ch.status == pb.CHARACTER_STATUS_READY and not ch.status_reasons
    assert ch.encoder == "dlib" and len(ch.identity.values) == 128
    assert abs(np.linalg.norm(ch.identity.values) - 1) < 1e-4
    assert ch.consent_given and ch.consent_at.seconds > 0 and ch.memory_version >= 1
    assert ch.sheet.must_keep_traits == ["brown eyes"] and ch.semantic_vector_id
    assert len(res.reference_quality) == 1 and res.reference_quality[0].accepted
    assert res.reference_quality[0].faces_found == 1
    # the reference is stored as given under characters/<id>/ref_0.png
    ref = ch.reference_images[0]
    assert ref.uri.endswith(f"characters/{ch.id}/ref_0.png") and (ref.width, ref.height) == (512, 512)
    assert [p.name for p in mesh.objects(ch.id)] == ["ref_0.png"]
    assert mesh.objects(ch.id)[0].read_bytes() == astronaut_png
    # semantic + one view point in Qdrant, with the payload the memory core writes
    points = await mesh.vector_points(ch.id)
    assert sorted(p["type"] for _, p in points) == ["semantic", "view"]
    assert all(p["owner_id"] == OWNER and p["encoder"] == "dlib" for _, p in points)
    assert (await mesh.rows(ch.id))["characters"] == 1

    got = await mesh.stub.GetCharacter(pb.GetCharacterRequest(character_id=ch.id, owner_id=OWNER))
    assert got.character.id == ch.id and list(got.character.identity.values) == list(ch.identity.values)
    # another owner: NOT_FOUND, never "permission denied" (that would reveal the character exists)
    await _fails(
        mesh.stub.GetCharacter(pb.GetCharacterRequest(character_id=ch.id, owner_id="intruder")),
        grpc.StatusCode.NOT_FOUND,
        ch.id,
    )
    await _fails(
        mesh.stub.UpdateCharacterSheet(
            pb.UpdateCharacterSheetRequest(character_id=ch.id, owner_id="intruder", sheet=SHEET, name="X")
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    for rpc, req in (
        (mesh.stub.ListHistory, pb.ListHistoryRequest(character_id=ch.id, owner_id="intruder")),
        (mesh.stub.GetCurrentState, pb.GetCurrentStateRequest(character_id=ch.id, owner_id="intruder")),
        (
            mesh.stub.BuildContext,
            pb.BuildContextRequest(character_id=ch.id, owner_id="intruder", user_prompt="x"),
        ),
        (mesh.stub.DeleteCharacter, pb.DeleteCharacterRequest(character_id=ch.id, owner_id="intruder")),
    ):
        await _fails(rpc(req), grpc.StatusCode.NOT_FOUND)
    listed = await mesh.stub.ListCharacters(pb.ListCharactersRequest(owner_id="intruder"))
    assert ch.id not in [c.id for c in listed.characters]

    new_sheet = pb.CharacterSheet(hair="long dark hair", must_keep_traits=["brown eyes", "long dark hair"])
    upd = await mesh.stub.UpdateCharacterSheet(
        pb.UpdateCharacterSheetRequest(
            character_id=ch.id, owner_id=OWNER, sheet=new_sheet, description="pilot"
        )
    )
    assert upd.character.sheet.hair == "long dark hair" and upd.character.description == "pilot"
    assert upd.character.name == "Eileen" and upd.character.memory_version == ch.memory_version + 1


async def test_retried_create_returns_the_same_character(mesh: Mesh, astronaut_png: bytes) -> None:
    owner = f"retry-{uuid.uuid4().hex[:6]}"
    first = await _create(mesh, astronaut_png, owner=owner, request_id="req-42")
    second = await _create(mesh, astronaut_png, owner=owner, request_id="req-42")
    assert second.character.id == first.character.id
    assert second.character.created_at == first.character.created_at
    assert [q.accepted for q in second.reference_quality] == [True]
    assert second.reference_quality[0].face_size_px == pytest.approx(first.reference_quality[0].face_size_px)
    assert await mesh.owner_rows(owner) == 1
    # the same request id from another owner is another character
    other = await _create(mesh, astronaut_png, owner=owner + "-b", request_id="req-42")
    assert other.character.id != first.character.id
    # paginated listing
    for i in range(2):
        await _create(mesh, astronaut_png, owner=owner, name=f"extra {i}")
    seen, token = [], ""
    while True:
        page = await mesh.stub.ListCharacters(
            pb.ListCharactersRequest(
                owner_id=owner, page=common_pb2.PageRequest(page_size=2, page_token=token)
            )
        )
        assert len(page.characters) <= 2
        seen += [c.id for c in page.characters]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 3 and first.character.id in seen


async def test_refused_creates_store_nothing(mesh: Mesh, astronaut_png: bytes, sky_png: bytes) -> None:
    owner = f"refused-{uuid.uuid4().hex[:6]}"
    before_points = len(await mesh.vector_points())
    before_objects = mesh.objects()

    # no consent: FAILED_PRECONDITION before anything is read or stored
    await _fails(
        mesh.stub.CreateCharacter(
            pb.CreateCharacterRequest(
                owner_id=owner,
                name="N",
                consent_given=False,
                reference_images=[_img(astronaut_png)],
                request_id="r1",
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "consent",
    )
    # a reference without a face: the identity service's status and message come back unchanged
    details = await _fails(
        mesh.stub.CreateCharacter(
            pb.CreateCharacterRequest(
                owner_id=owner,
                name="N",
                consent_given=True,
                reference_images=[_img(astronaut_png), _img(sky_png)],
                request_id="r2",
            )
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert details == "no face found in reference image 1"
    # 6 references, or none: INVALID_ARGUMENT
    for n in (6, 0):
        await _fails(
            mesh.stub.CreateCharacter(
                pb.CreateCharacterRequest(
                    owner_id=owner, name="N", consent_given=True, reference_images=[_img(astronaut_png)] * n
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "between 1 and 5 reference images",
            f"got {n}",
        )
    # bytes that are not an image: INVALID_ARGUMENT naming the reference
    await _fails(
        mesh.stub.CreateCharacter(
            pb.CreateCharacterRequest(
                owner_id=owner,
                name="N",
                consent_given=True,
                reference_images=[_img(astronaut_png), _img(b"not an image")],
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "reference image 1",
    )
    # nothing stored anywhere: rows, objects, Qdrant points
    assert await mesh.owner_rows(owner) == 0
    assert mesh.objects() == before_objects
    assert len(await mesh.vector_points()) == before_points
    assert not [p for _, p in await mesh.vector_points() if p.get("owner_id") == owner]


async def test_three_scene_story_and_context(mesh: Mesh, astronaut_png: bytes) -> None:
    ch = (await _create(mesh, astronaut_png, owner=OWNER, name="Eileen")).character
    rng = np.random.default_rng(7)
    for i, scene in enumerate(STORY, 1):
        ep = pb.Episode()
        ep.CopyFrom(scene)
        ep.character_id = ch.id
        ep.kind = common_pb2.MEDIA_KIND_IMAGE
        ep.image.CopyFrom(
            common_pb2.ImageRef(uri=f"file:///renders/{i}.png", sha256="ab" * 32, mime="image/png")
        )
        face = np.asarray(ch.identity.values) + rng.normal(scale=0.05, size=128)
        ep.face_embedding.CopyFrom(
            common_pb2.IdentityVector(encoder="dlib", values=(face / np.linalg.norm(face)))
        )
        ep.idr.CopyFrom(common_pb2.IdrScore(raw=0.95, calibrated=0.9))
        t0 = time.perf_counter()
        res = await mesh.stub.RecordEpisode(pb.RecordEpisodeRequest(episode=ep))
        wall = time.perf_counter() - t0
        assert res.created and res.episode.scene_index == i and not res.consolidated
        # the text embedder indexed the scene: its time is reported and is part of the call
        assert 0 < res.model_seconds < wall
        assert res.episode.image.uri == f"file:///renders/{i}.png"
        assert res.episode.idr.verdict == common_pb2.VERDICT_GOLDEN

    # the same job again: the stored episode, no second one
    replay = pb.Episode(character_id=ch.id, job_id="job-2", prompt="something else")
    res = await mesh.stub.RecordEpisode(pb.RecordEpisodeRequest(episode=replay))
    assert not res.created and res.episode.scene_index == 2 and res.episode.prompt == "A duel in the forest"
    assert (await mesh.rows(ch.id))["episodes"] == 3

    # the face embedding must fit the character's identity
    await _fails(
        mesh.stub.RecordEpisode(
            pb.RecordEpisodeRequest(
                episode=pb.Episode(
                    character_id=ch.id,
                    job_id="bad",
                    face_embedding=common_pb2.IdentityVector(encoder="dlib", values=[1, 0]),
                )
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "128",
    )

    state = await mesh.stub.GetCurrentState(pb.GetCurrentStateRequest(character_id=ch.id, owner_id=OWNER))
    now = {(i.category, i.name): i.since_scene for i in state.items}
    assert now == {("props", "sword"): 1, ("injuries", "cut on left cheek"): 2, ("setting", "camp"): 3}
    hist = await mesh.stub.GetAttributeHistory(
        pb.GetAttributeHistoryRequest(character_id=ch.id, category="clothing", name="Battle Armor")
    )
    assert [(i.since_scene, i.until_scene) for i in hist.intervals] == [(1, 3)]
    hist = await mesh.stub.GetAttributeHistory(
        pb.GetAttributeHistoryRequest(character_id=ch.id, category="props", name="sword")
    )
    assert [(i.since_scene, i.until_scene) for i in hist.intervals] == [(1, 0)]

    req = pb.BuildContextRequest(
        character_id=ch.id,
        owner_id=OWNER,
        user_prompt="Scene 4: she walks into the village at dawn",
        style_overrides=["negative: lens flare"],
    )
    t0 = time.perf_counter()
    ctx = await mesh.stub.BuildContext(req)
    wall = time.perf_counter() - t0
    # the three scenes are all recent ones: nothing older to rank, so no embedder call (template engine: no LLM)
    assert ctx.model_seconds == 0.0 and not ctx.relevant
    names = {(i.category, i.name) for i in ctx.current_state}
    assert ("props", "sword") in names and ("injuries", "cut on left cheek") in names
    assert not any(c == "clothing" for c, _ in names)
    prompt = ctx.prompt.prompt
    current = prompt.split("No longer present")[0]
    assert "sword" in current and "cut on left cheek" in current and "armour" not in current
    assert "No longer present: battle armour" in prompt
    assert ctx.prompt.engine == "template" and "lens flare" in ctx.prompt.negative_prompt
    assert [e.scene_index for e in ctx.recent] == [3, 2, 1]
    assert ctx.recent[0].prompt == STORY[2].prompt and ctx.recent[0].job_id == "job-3"
    assert len(ctx.semantic.values) == len(ctx.merged.values) == 128
    assert abs(np.linalg.norm(ctx.merged.values) - 1) < 1e-4
    assert np.dot(ctx.merged.values, ch.identity.values) > 0.9
    assert ctx.character.id == ch.id and ctx.memory_version == ctx.character.memory_version
    assert not ctx.cache_hit
    again = await mesh.stub.BuildContext(req)
    # no LLM: the template is composed again (the same prompt); the prompt cache is neither read nor written
    assert not again.cache_hit and again.prompt.prompt == prompt
    assert not await mesh.written_cache_keys(ch.id, wait_s=0.5)

    # history, newest first, paginated
    page = await mesh.stub.ListHistory(
        pb.ListHistoryRequest(character_id=ch.id, owner_id=OWNER, page=common_pb2.PageRequest(page_size=2))
    )
    assert [e.scene_index for e in page.episodes] == [3, 2] and page.next_page_token
    rest = await mesh.stub.ListHistory(
        pb.ListHistoryRequest(
            character_id=ch.id, page=common_pb2.PageRequest(page_size=2, page_token=page.next_page_token)
        )
    )
    assert [e.scene_index for e in rest.episodes] == [1] and not rest.next_page_token

    # consolidation: forced now, then automatically at 5 image scenes since the last summary
    cons = await mesh.stub.Consolidate(pb.ConsolidateRequest(character_id=ch.id))
    assert cons.up_to_scene == 3 and cons.engine == "digest" and "scene 3" in cons.summary
    flags = []
    for j in range(4, 9):
        r = await mesh.stub.RecordEpisode(
            pb.RecordEpisodeRequest(
                episode=pb.Episode(character_id=ch.id, job_id=f"job-{j}", prompt=f"scene {j} on the road")
            )
        )
        flags.append(r.consolidated)
    assert flags == [False, False, False, False, True]
    hist = await mesh.stub.ListHistory(pb.ListHistoryRequest(character_id=ch.id))
    assert "scene 8" in hist.story_summary and hist.episodes[0].scene_index == 8
    third = await mesh.stub.BuildContext(req)
    assert not third.cache_hit and third.story_summary == hist.story_summary  # memory version moved on

    consolidated = await _events(mesh.nats_url, subjects.MEMORY_CONSOLIDATED, ch.id)
    assert consolidated and consolidated[0][0].headers["Nats-Msg-Id"] == f"memory.consolidated.{ch.id}.3"
    recorded = await _events(mesh.nats_url, subjects.EPISODE_RECORDED, ch.id)
    assert recorded and recorded[0][1].scene_index == 1


async def test_erasure_reaches_every_store_and_events_go_out(mesh: Mesh, astronaut_png: bytes) -> None:
    ch = (await _create(mesh, astronaut_png, owner=OWNER, name="Doomed")).character
    for j in range(1, 3):
        face = np.asarray(ch.identity.values)
        await mesh.stub.RecordEpisode(
            pb.RecordEpisodeRequest(
                episode=pb.Episode(
                    character_id=ch.id,
                    job_id=f"e-{j}",
                    prompt=f"scene {j} with a red scarf",
                    tags=common_pb2.StateTags(clothing=["red scarf"]),
                    face_embedding=common_pb2.IdentityVector(encoder="dlib", values=face),
                )
            )
        )
    await mesh.stub.Consolidate(pb.ConsolidateRequest(character_id=ch.id))
    await mesh.stub.BuildContext(pb.BuildContextRequest(character_id=ch.id, user_prompt="scene 3"))
    assert (await mesh.rows(ch.id)) == {"characters": 1, "episodes": 2, "summaries": 1}
    assert (
        len(await mesh.vector_points(ch.id)) == 2 + 2 + 2
    )  # semantic + view, 2 episode faces, 2 episode texts
    await mesh.cache_llm_prompt(ch.id)
    assert mesh.objects(ch.id) and await mesh.written_cache_keys(ch.id)

    res = await mesh.stub.DeleteCharacter(pb.DeleteCharacterRequest(character_id=ch.id, owner_id=OWNER))
    report = {r.store: r for r in res.report}
    assert set(report) == {"database", "vectors", "objects", "prompt_cache", "events"}
    assert all(r.ok and not r.error for r in report.values()), res
    assert report["events"].removed == 1  # character.deleted is out: the other services erase their part
    assert report["database"].removed == 1 + 2 + 1
    assert report["vectors"].removed == 6
    assert report["objects"].removed == 1
    assert report["prompt_cache"].removed >= 1

    assert await mesh.rows(ch.id) == {"characters": 0, "episodes": 0, "summaries": 0}
    assert await mesh.vector_points(ch.id) == []
    assert mesh.objects(ch.id) == []
    assert await mesh.cache_keys(ch.id) == []
    await _fails(
        mesh.stub.GetCharacter(pb.GetCharacterRequest(character_id=ch.id)), grpc.StatusCode.NOT_FOUND
    )
    await _fails(
        mesh.stub.DeleteCharacter(pb.DeleteCharacterRequest(character_id=ch.id)), grpc.StatusCode.NOT_FOUND
    )

    created = await _events(mesh.nats_url, subjects.CHARACTER_CREATED, ch.id)
    deleted = await _events(mesh.nats_url, subjects.CHARACTER_DELETED, ch.id)
    assert len(created) == 1 and len(deleted) == 1
    msg, event = created[0]
    assert (
        isinstance(event, events_pb2.CharacterCreated) and event.owner_id == OWNER and event.status == "ready"
    )
    assert msg.headers["Nats-Msg-Id"] == f"character.created.{ch.id}"
    assert deleted[0][0].headers["Nats-Msg-Id"] == f"character.deleted.{ch.id}"


@pytest.mark.slow
async def test_minilm_embedder_picks_the_relevant_scene(
    identity_addr, nats_server, tmp_path, astronaut_png
) -> None:
    """The real all-MiniLM-L6-v2 text embedder behind the service: an old scene relevant to the new prompt is
    retrieved by meaning."""
    env = {
        "IDLOCK_DATABASE_URL": "",
        "IDLOCK_IDENTITY_ADDR": identity_addr,
        "IDLOCK_NATS_URL": nats_server.url,
        "IDLOCK_MEMORY_TEXT_EMBEDDER": "minilm",
        "IDLOCK_MEMORY_RECENT_K": "1",
        "IDLOCK_MEMORY_RELEVANT_K": "1",
        "IDLOCK_MEMORY_CACHE_BACKEND": "memory",
    }
    async with serving("memory", tmp_path, **env) as svc:
        stub = pb_grpc.MemoryServiceStub(svc.channel)
        ch = await _consenting(stub, "Eileen", astronaut_png)
        prompts = [
            "She feeds a stray cat in a rainy alley",
            "She pilots a spacecraft through an asteroid field",
            "She cooks dinner for her family",
            "She reads a letter by candlelight",
        ]
        for i, p in enumerate(prompts):
            await stub.RecordEpisode(
                pb.RecordEpisodeRequest(episode=pb.Episode(character_id=ch.id, job_id=f"m-{i}", prompt=p))
            )
        ctx = await stub.BuildContext(
            pb.BuildContextRequest(
                character_id=ch.id, user_prompt="The rocket ship lands on a distant planet"
            )
        )
        assert [e.scene_index for e in ctx.recent] == [4]
        assert [e.prompt for e in ctx.relevant] == [prompts[1]]
        assert ctx.model_seconds > 0  # older scenes were ranked: the embedder's time is reported

        # recording that scene indexes the vector its context made of the same text: no second model run
        landing = "The rocket ship lands on a distant planet"
        scene = pb.Episode(character_id=ch.id, job_id="m-landing", prompt=landing)
        recorded = await stub.RecordEpisode(pb.RecordEpisodeRequest(episode=scene))
        assert recorded.created and recorded.model_seconds == 0.0
        # taken once: a replay of the record, or another scene with other words, runs the model
        other = pb.Episode(character_id=ch.id, job_id="m-cake", prompt="She bakes a birthday cake")
        assert (await stub.RecordEpisode(pb.RecordEpisodeRequest(episode=other))).model_seconds > 0
        # the reused vector was indexed as the scene's own: a paraphrase finds the landing among the older scenes
        found = await stub.BuildContext(
            pb.BuildContextRequest(character_id=ch.id, user_prompt="A rocket touches down on a faraway world")
        )
        assert [e.prompt for e in found.relevant] == [landing]


async def test_without_nats_the_service_still_serves(identity_addr, tmp_path, astronaut_png) -> None:
    """NATS unreachable at start-up: no events, the LLM's prompts cached in memory, every RPC still answered."""
    from services.memory.prompt import CONSTRAINT_LINES, MANDATORY_NEGATIVE_TOKENS
    from tests.fakes.groq_server import FakeGroqServer

    with FakeGroqServer() as groq:
        env = {
            "IDLOCK_DATABASE_URL": "",
            "IDLOCK_IDENTITY_ADDR": identity_addr,
            "IDLOCK_NATS_URL": "nats://127.0.0.1:1",
            "IDLOCK_MEMORY_NATS_WAIT_S": "0.5",
            "IDLOCK_MEMORY_TEXT_EMBEDDER": "hashing",
            "IDLOCK_MEMORY_GROQ_API_KEY": "test-key",
            "IDLOCK_MEMORY_GROQ_BASE_URL": groq.base_url,
        }
        groq.reply(
            "An astronaut with brown eyes on a quiet morning. "
            + " ".join(CONSTRAINT_LINES)
            + " Negative tokens: "
            + ", ".join(MANDATORY_NEGATIVE_TOKENS)
        )
        async with serving("memory", tmp_path, **env) as svc:
            stub = pb_grpc.MemoryServiceStub(svc.channel)
            ch = await _consenting(stub, "Offline", astronaut_png)
            req = pb.BuildContextRequest(character_id=ch.id, user_prompt="a quiet morning")
            first = await stub.BuildContext(req)
            assert first.prompt.engine.startswith("llm") and not first.cache_hit, first.prompt.fallback_reason
            again = await stub.BuildContext(req)
            assert again.cache_hit and again.prompt.prompt == first.prompt.prompt and groq.calls == 1
            res = await stub.DeleteCharacter(pb.DeleteCharacterRequest(character_id=ch.id))
            # memory's own stores are clean; the other services could not be told, and the report says so
            report = {r.store: r for r in res.report}
            assert all(r.ok for name, r in report.items() if name != "events")
            assert not report["events"].ok and "not told" in report["events"].error
            # the rows are gone but the erasure is not finished: deleting again takes it up (and says so again)
            second = {
                r.store: r
                for r in (await stub.DeleteCharacter(pb.DeleteCharacterRequest(character_id=ch.id))).report
            }
            assert second["database"].ok and second["database"].removed == 0 and not second["events"].ok
            await _fails(
                stub.GetCharacter(pb.GetCharacterRequest(character_id=ch.id)), grpc.StatusCode.NOT_FOUND
            )


async def test_recording_does_not_wait_for_the_summariser(
    identity_addr, nats_server, tmp_path, astronaut_png
) -> None:
    """The fifth image makes a summary due: RecordEpisode answers without waiting for the (slow) LLM summariser,
    and reads of the story wait for the summary being written."""
    from tests.fakes.groq_server import FakeGroqServer

    with FakeGroqServer() as groq:
        env = {
            "IDLOCK_DATABASE_URL": "",
            "IDLOCK_IDENTITY_ADDR": identity_addr,
            "IDLOCK_NATS_URL": nats_server.url,
            "IDLOCK_MEMORY_TEXT_EMBEDDER": "hashing",
            "IDLOCK_MEMORY_GROQ_API_KEY": "test-key",
            "IDLOCK_MEMORY_GROQ_BASE_URL": groq.base_url,
            "IDLOCK_MEMORY_LLM_MAX_RETRIES": "0",
        }
        async with serving("memory", tmp_path, **env) as svc:
            stub = pb_grpc.MemoryServiceStub(svc.channel)
            ch = await _consenting(stub, "Arya", astronaut_png)
            for i in range(1, 5):
                r = await stub.RecordEpisode(
                    pb.RecordEpisodeRequest(
                        episode=pb.Episode(character_id=ch.id, job_id=f"s-{i}", prompt=f"scene {i}")
                    )
                )
                assert not r.consolidated
            summary = "Arya crossed four valleys and reached the sea."
            groq.reply(summary)
            groq.delay_s = 1.5
            t0 = time.perf_counter()
            fifth = await stub.RecordEpisode(
                pb.RecordEpisodeRequest(
                    episode=pb.Episode(character_id=ch.id, job_id="s-5", prompt="scene 5")
                )
            )
            answered = time.perf_counter() - t0
            assert fifth.consolidated and fifth.episode.scene_index == 5
            assert answered < 1.0, answered  # the summariser's 1.5 s were not waited for
            hist = await stub.ListHistory(pb.ListHistoryRequest(character_id=ch.id, owner_id=OWNER))
            assert time.perf_counter() - t0 >= 1.4  # the read waited for the summary being written
            assert hist.story_summary == summary and groq.calls == 1


async def test_an_erasure_left_unfinished_by_a_crash_completes_at_start(
    identity_addr, nats_server, tmp_path, astronaut_png
) -> None:
    """What a crash between the erasure's record and its end leaves (the record, every store still full) is
    erased when the service starts again, and character.deleted goes out."""
    env = {
        "IDLOCK_DATABASE_URL": "",
        "IDLOCK_IDENTITY_ADDR": identity_addr,
        "IDLOCK_NATS_URL": nats_server.url,
        "IDLOCK_MEMORY_TEXT_EMBEDDER": "hashing",
        "IDLOCK_MEMORY_KV_BUCKET": f"prompts_{uuid.uuid4().hex[:8]}",
        "IDLOCK_MEMORY_GROQ_API_KEY": "",
        "IDLOCK_STORAGE_BACKEND": "local",
    }
    async with serving("memory", tmp_path, **env) as svc:
        stub = pb_grpc.MemoryServiceStub(svc.channel)
        ch = await _consenting(stub, "Crashed", astronaut_png)
        await stub.RecordEpisode(
            pb.RecordEpisodeRequest(episode=pb.Episode(character_id=ch.id, job_id="j-1", prompt="a storm"))
        )
        # the erasure's first write, and then the process died
        db = Database.open(DatabaseSettings(url=""), service="memory", data_dir=tmp_path)
        try:
            async with db.session() as s:
                await record_erasure(s, ch.id, OWNER)
        finally:
            await db.close()
    assert (tmp_path / "objects" / "characters" / ch.id).exists()

    async with serving("memory", tmp_path, **env) as svc:
        stub = pb_grpc.MemoryServiceStub(svc.channel)
        deadline = time.monotonic() + 30
        while True:
            try:
                await stub.GetCharacter(pb.GetCharacterRequest(character_id=ch.id, owner_id=OWNER))
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND
                break
            assert time.monotonic() < deadline, "the unfinished erasure was not taken up"
            await asyncio.sleep(0.1)
        deleted = await _events(nats_server.url, subjects.CHARACTER_DELETED, ch.id)
        assert len(deleted) == 1 and deleted[0][1].owner_id == OWNER
    assert not (tmp_path / "objects" / "characters" / ch.id).exists()
    db = Database.open(DatabaseSettings(url=""), service="memory", data_dir=tmp_path)
    try:
        async with db.session() as s:
            (row,) = (await s.execute(select(Erasure))).scalars()
            assert row.finished_at is not None and row.removed["database"] == 2 and row.removed["events"] == 1
    finally:
        await db.close()


async def test_the_trainer_finds_scene_prompts_in_the_history(mesh: Mesh, astronaut_png: bytes) -> None:
    """Events carry no prompts: the trainer asks memory for a golden image's scene prompt."""
    from idlock.settings import MeshSettings
    from services.trainer.clients import MemoryClient

    ch = (await _create(mesh, astronaut_png, name="Prompted")).character
    for j in range(1, 4):
        await mesh.stub.RecordEpisode(
            pb.RecordEpisodeRequest(
                episode=pb.Episode(character_id=ch.id, job_id=f"p-{j}", prompt=f"scene {j} at the harbour")
            )
        )
    client = MemoryClient(MeshSettings(memory_addr=mesh.address))
    try:
        found = await client.prompts(ch.id, {"p-1", "p-3", "p-9"})
    finally:
        await client.close()
    assert found == {"p-1": "scene 1 at the harbour", "p-3": "scene 3 at the harbour"}


async def test_names_and_descriptions_lose_bidi_and_zero_width_characters(
    mesh: Mesh, astronaut_png: bytes
) -> None:
    """A name that reads one way and is stored another ('Ar' + RIGHT-TO-LEFT OVERRIDE + 'ya') is cleaned."""
    made = await mesh.stub.CreateCharacter(
        pb.CreateCharacterRequest(
            owner_id=OWNER,
            name="Ar\u202eya\u200b",
            description="a knight\n\u200bof the \u2066north\u2069",
            consent_given=True,
            reference_images=[_img(astronaut_png)],
        )
    )
    assert made.character.name == "Arya" and made.character.description == "a knight\nof the north"
    await _fails(
        mesh.stub.UpdateCharacterSheet(
            pb.UpdateCharacterSheetRequest(
                character_id=made.character.id, owner_id=OWNER, name="\u200b\u202e"
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "name",
    )
    renamed = await mesh.stub.UpdateCharacterSheet(
        pb.UpdateCharacterSheetRequest(character_id=made.character.id, owner_id=OWNER, name="Ary\u200ba")
    )
    assert renamed.character.name == "Arya"
