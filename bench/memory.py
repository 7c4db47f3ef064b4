"""BuildContext latency of the memory service over gRPC, on a populated memory, and the prompt cache's effect.

    .venv/bin/python bench/memory.py [--characters 100] [--episodes 100] [--requests 300]
                                     [--llm-requests 40] [--llm-latency-ms 250] [--embedder minilm|hashing]
    .venv/bin/python bench/memory.py --sweep 100,1000,10000,100000,1000000 [--requests 200] [--peer-max 10000]

Set-up (not timed as part of the figures): SQLite + Qdrant Edge (the embedded default) + objects on disk under a
temp folder, a real nats-server (JetStream KV bucket for the prompt cache, as deployed). The same points also go
into qdrant-client's local mode, the peer measured in the same run (it filters in Python over every point; its
folder's points are counted after it is measured: `peer_points`). 100 characters x 100 episodes are written in
bulk straight through the memory core (one multi-row INSERT for the episodes, batched vector upserts of the same
points `record_scene` writes: face + text vector per episode), never through 10,000 RPCs. Episode texts come from a
few hundred distinct sentences, embedded once each. Every episode carries state tags (clothing put on and taken
off, props, injuries that heal, settings), so BuildContext replays the story for its state: from the story fold
the service would have stored while the story was written (one every 32 scenes, so 0-31 scenes behind), or from
the first scene for stories shorter than that.

Then the real memory service (its own `build()`, on port 0) answers BuildContext RPCs from a gRPC client in the
same process, one at a time:
1. template engine, every prompt new: p50_ms / p95_ms (peer: peer_qdrant_local_*); the same prompts again:
   template_again_* (a template prompt is composed at each call, never read from the prompt cache, so the same
   prompts cost the same; the check that no answer says cache_hit is part of the run).
2. the LLM formatter against the fake Groq server (tests/fakes/groq_server.py) answering after a fixed delay,
   new prompts: llm_uncached_*; the same prompts again, answered from the cache: llm_cached_*.

The last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "libs"))

from sqlalchemy import insert, update

from idlock import grpc_client
from idlock.db import Database
from idlock.grpc_server import GrpcService
from idlock.natsd import NatsServer
from idlock.settings import DatabaseSettings
from idlock.v1 import memory_service_pb2 as pb
from idlock.v1 import memory_service_pb2_grpc as pb_grpc
from services.memory import repository as repo
from services.memory.models import SCHEMA_VERSION, Base, Character, Episode, StoryFold
from services.memory.state import SceneTags, StateCache, StateFold
from services.memory.text_embed import get_text_embedder
from services.memory.vectors import MemoryVectors

ENCODER, DIM = "dlib", 128
ACTIONS = [
    "walks through",
    "rests in",
    "fights a bandit in",
    "searches",
    "rides a horse across",
    "hides in",
    "argues with a merchant in",
    "reads an old map in",
    "climbs the walls of",
    "sleeps in",
    "trains with a sword in",
    "meets an old friend in",
    "escapes from",
    "celebrates a victory in",
    "mourns a loss in",
    "explores",
    "repairs her gear in",
    "waits for dawn in",
    "bargains for food in",
    "signals an ally from",
]
PLACES = [
    "the castle",
    "the forest",
    "the village market",
    "the harbour",
    "the desert",
    "the mountain pass",
    "the ruined temple",
    "the tavern",
    "the library",
    "the swamp",
]
CLOTHING = ["battle armour", "red cloak", "leather boots", "wool scarf", "silver helmet", "travel coat"]
PROPS = ["sword", "lantern", "bow", "shield", "map", "dagger"]
INJURIES = ["cut on left cheek", "bruised arm", "burn on right hand", "sprained ankle"]


def scene_plan(rng: random.Random, n: int) -> list[dict]:
    """n scenes of one character: text plus tags added and removed, like the state extractor records them."""
    worn: set[str] = set()
    held: set[str] = set()
    hurt: set[str] = set()
    out = []
    for i in range(1, n + 1):
        added: dict[str, list[str]] = {}
        removed: dict[str, list[str]] = {}
        if i % 10 == 1:
            added["setting"] = [rng.choice(PLACES).removeprefix("the ")]
        for pool, have, cat in (
            (CLOTHING, worn, "clothing"),
            (PROPS, held, "props"),
            (INJURIES, hurt, "injuries"),
        ):
            r = rng.random()
            if r < 0.15 and len(have) < len(pool):
                item = rng.choice([x for x in pool if x not in have])
                have.add(item)
                added.setdefault(cat, []).append(item)
            elif r > 0.9 and have:
                item = rng.choice(sorted(have))
                have.discard(item)
                removed.setdefault(cat, []).append(item)
        text = f"She {rng.choice(ACTIONS)} {rng.choice(PLACES)}"
        out.append({"scene": i, "text": text, "added": added, "removed": removed})
    return out


def stored_fold(character_id: str, plan: list[dict], k: int) -> StoryFold | None:
    """The story fold the memory service would have stored while this story was written: it stores one every
    `StateCache.store_every` scenes, so the stored one is 0..store_every-1 scenes behind (spread by `k`)."""
    every = StateCache().store_every
    last = len(plan) - k % every
    if last < every:
        return None
    fold = StateFold()
    for sc in plan[:last]:
        fold.add(SceneTags(sc["scene"], sc["added"], sc["removed"], sc["text"]))
    return StoryFold(character_id=character_id, last_scene=last, fold=fold.to_dict())


def unit(rng: np.random.Generator, base: np.ndarray | None = None, noise: float = 0.0) -> np.ndarray:
    v = rng.normal(size=DIM) if base is None else base + rng.normal(scale=noise, size=DIM)
    return v / np.linalg.norm(v)


#: the peer's folder: not `<data_dir>/qdrant`, where the memory service on Qdrant Edge would find an earlier local-mode
#: memory and move its points in (and remove the folder) before the peer is measured
PEER_FOLDER = "peer-qdrant"


def open_engine(data_dir: Path, engine: str) -> MemoryVectors:
    """The folder the memory service opens for `engine` under the same data dir."""
    if engine == "edge":
        return MemoryVectors.edge(data_dir / "vectors")
    return MemoryVectors.qdrant_local(data_dir / PEER_FOLDER)


async def populate(
    data_dir: Path, n_chars: int, n_eps: int, embedder_kind: str, engines: tuple[str, ...] = ("edge",)
) -> list[str]:
    """Rows once; the same points into each engine's folder. Written a few characters at a time, so a million
    episodes never sit in memory at once."""
    t0 = time.perf_counter()
    db = Database.open(DatabaseSettings(url=""), service="memory", data_dir=data_dir)
    await db.migrate(Base.metadata, version=SCHEMA_VERSION)
    all_vectors = [open_engine(data_dir, e) for e in engines]
    embedder = get_text_embedder(embedder_kind)
    rng = random.Random(1)
    nrng = np.random.default_rng(1)
    ids: list[str] = []
    vecs: dict[str, np.ndarray] = {}  # each distinct sentence embedded once
    spent = {"rows": 0.0, "embed": 0.0, **{e: 0.0 for e in engines}}
    chunk = max(1, 20_000 // max(n_eps, 1))  # characters a chunk: ~20,000 episodes
    for first in range(0, n_chars, chunk):
        t = time.perf_counter()
        episodes: list[dict] = []
        faces: list[tuple] = []
        texts: list[tuple] = []
        folds: list[StoryFold] = []
        for c in range(first, min(n_chars, first + chunk)):
            owner = f"owner-{c % 10}"
            async with db.session() as s:
                ch = await repo.create_character(
                    s,
                    owner_id=owner,
                    name=f"Hero {c}",
                    consent_given=True,
                    sheet={"hair": "short dark hair", "eyes": "brown eyes", "must_keep": ["brown eyes"]},
                    encoder=ENCODER,
                    identity_dim=DIM,
                )
            ids.append(ch.id)
            sem = unit(nrng)
            for vectors in all_vectors:
                await vectors.upsert_semantic(ch.id, owner, ENCODER, sem)
            plan = scene_plan(rng, n_eps)
            folds.append(stored_fold(ch.id, plan, c))
            for sc in plan:
                eid = str(uuid.uuid4())
                face = unit(nrng, sem, 0.05)
                episodes.append(
                    {
                        "id": eid,
                        "character_id": ch.id,
                        "job_id": f"bench-{ch.id}-{sc['scene']}",
                        "scene_index": sc["scene"],
                        "kind": "image",
                        "prompt": sc["text"],
                        "result_refs": [],
                        "face_embedding": face.tolist(),
                        "tags_added": sc["added"],
                        "tags_removed": sc["removed"],
                        "description": "",
                        "dialogue": "",
                        "frame_idrs": [],
                        "state_source": "heuristic",
                    }
                )
                faces.append((ch.id, owner, eid, sc["scene"], face, []))
                texts.append((ch.id, owner, eid, sc["scene"], sc["text"]))
        async with db.session() as s:
            for i in range(0, len(episodes), 2000):
                await s.execute(insert(Episode), episodes[i : i + 2000])
            s.add_all(f for f in folds if f is not None)
        spent["rows"] += time.perf_counter() - t
        t = time.perf_counter()
        new = sorted({text for *_, text in texts} - vecs.keys())
        if new:
            vecs.update(zip(new, embedder.embed(new), strict=True))
        spent["embed"] += time.perf_counter() - t
        for engine, vectors in zip(engines, all_vectors, strict=True):
            t = time.perf_counter()
            await vectors.upsert_episode_faces_bulk(ENCODER, faces, batch=4096)
            await vectors.upsert_episode_texts_bulk(
                embedder.name, [(c, o, e, sc, vecs[text], text) for c, o, e, sc, text in texts], batch=4096
            )
            spent[engine] += time.perf_counter() - t
    async with db.session() as s:
        await s.execute(update(Character).values(episode_count=n_eps, memory_version=n_eps + 1))
    for vectors in all_vectors:
        await vectors.close()
    await db.close()
    loads = ", ".join(f"{e} {spent[e]:.1f}s" for e in engines)
    print(
        f"populated {n_chars} characters x {n_eps} episodes in {time.perf_counter() - t0:.0f}s: rows "
        f"{spent['rows']:.1f}s, {len(vecs)} texts embedded ({embedder.name}) {spent['embed']:.1f}s, "
        f"{2 * n_chars * n_eps} vector points: {loads}",
        flush=True,
    )
    return ids


@contextlib.asynccontextmanager
async def memory_service(data_dir: Path, **env: str):
    from services.memory import server

    overrides = {
        "IDLOCK_DATA_DIR": str(data_dir),
        "IDLOCK_MEMORY_PORT": "0",
        "IDLOCK_DATABASE_URL": "",
        **env,
    }
    with mock.patch.dict(os.environ, overrides):
        settings = server.SETTINGS()
        service = GrpcService(server.build(settings), settings)
        await service.start()
    try:
        async with grpc_client.channel(service.address, default_timeout_s=60) as channel:
            yield pb_grpc.MemoryServiceStub(channel)
    finally:
        await service.stop(drain_s=0)


def pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(xs, q)), 2)


async def timed(stub, reqs: list[pb.BuildContextRequest], *, expect_hit: bool, engine: str) -> list[float]:
    out = []
    for r in reqs:
        t = time.perf_counter()
        res = await stub.BuildContext(r)
        out.append((time.perf_counter() - t) * 1000)
        if res.cache_hit != expect_hit:
            raise SystemExit(f"expected cache_hit={expect_hit}, got {res.cache_hit}")
        if not res.prompt.engine.startswith(engine):
            raise SystemExit(
                f"expected engine {engine}, got {res.prompt.engine} ({res.prompt.fallback_reason})"
            )
    return out


def requests(ids: list[str], n: int, tag: str, seed: int) -> list[pb.BuildContextRequest]:
    rng = random.Random(seed)
    return [
        pb.BuildContextRequest(
            character_id=rng.choice(ids),
            user_prompt=f"She {rng.choice(ACTIONS)} {rng.choice(PLACES)} at dusk ({tag} {k})",
        )
        for k in range(n)
    ]


async def context_latency(data_dir: Path, ids: list[str], engine: str, embedder: str, n: int) -> list[float]:
    """BuildContext (template prompts, every one new) against the memory service on `engine`, after a warm-up."""
    nats_srv = NatsServer(data_dir / f"nats-{engine}", port=0)
    nats_srv.start()
    env = {
        "IDLOCK_NATS_URL": nats_srv.url,
        "IDLOCK_MEMORY_TEXT_EMBEDDER": embedder,
        "IDLOCK_MEMORY_VECTOR_ENGINE": engine,
        "IDLOCK_MEMORY_GROQ_API_KEY": "",
    }
    if engine == "qdrant":  # (set for Qdrant Edge, it would be read as an earlier memory to move in)
        env["IDLOCK_MEMORY_QDRANT_PATH"] = str(data_dir / PEER_FOLDER)
    try:
        async with memory_service(data_dir, **env) as stub:
            await timed(stub, requests(ids, 5, "warm-up", 0), expect_hit=False, engine="template")
            return await timed(stub, requests(ids, n, "sweep", 1), expect_hit=False, engine="template")
    finally:
        nats_srv.stop()


async def peer_points(data_dir: Path) -> int:
    """The points in the peer's folder after it was measured: all of them, none moved into Qdrant Edge by a
    service that took the folder for an earlier memory (the peer would then have searched an empty store)."""
    if not (data_dir / PEER_FOLDER / "collection").is_dir():
        raise SystemExit(
            f"the peer's folder {data_dir / PEER_FOLDER} is gone: its figures are not the peer's"
        )
    peer = open_engine(data_dir, "qdrant")
    try:
        return len(await peer.character_points())
    finally:
        await peer.close()


async def sweep(sizes: list[int], n_requests: int, embedder: str, peer_max: int) -> dict:
    """BuildContext p50/p95 (template prompts, every one new) for each total number of episodes, as about sqrt(N)
    characters x sqrt(N) episodes each (at most 1,000 characters), on Qdrant Edge and, up to `peer_max` episodes,
    on qdrant-client's local mode (the peer: it scans every point in Python)."""
    out: dict[str, dict] = {}
    for total in sizes:
        n_chars = max(1, min(1000, math.isqrt(total)))
        n_eps = max(1, total // n_chars)
        engines = ("edge", "qdrant") if total <= peer_max else ("edge",)
        with tempfile.TemporaryDirectory(prefix="idlock-bench-memory-") as tmp:
            data_dir = Path(tmp)
            t0 = time.perf_counter()
            ids = await populate(data_dir, n_chars, n_eps, embedder, engines)
            populated_s = time.perf_counter() - t0
            ms = {e: await context_latency(data_dir, ids, e, embedder, n_requests) for e in engines}
            points = await peer_points(data_dir) if "qdrant" in engines else 0
        row = {
            "characters": n_chars,
            "episodes_per_character": n_eps,
            "p50_ms": pct(ms["edge"], 50),
            "p95_ms": pct(ms["edge"], 95),
            "populate_s": round(populated_s, 1),
        }
        line = f"{n_chars * n_eps:>9} episodes ({n_chars} x {n_eps}): edge p50 {row['p50_ms']} ms, p95 {row['p95_ms']} ms"
        if "qdrant" in ms:
            row["peer_qdrant_local_p50_ms"] = pct(ms["qdrant"], 50)
            row["peer_qdrant_local_p95_ms"] = pct(ms["qdrant"], 95)
            row["p95_ratio_vs_peer"] = round(row["p95_ms"] / row["peer_qdrant_local_p95_ms"], 3)
            row["peer_points"] = points
            line += f"; qdrant-client local mode p95 {row['peer_qdrant_local_p95_ms']} ms"
        out[str(n_chars * n_eps)] = row
        print(line, flush=True)
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--characters", type=int, default=100)
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--llm-requests", type=int, default=40)
    ap.add_argument("--llm-latency-ms", type=float, default=250.0)
    ap.add_argument("--embedder", choices=["minilm", "hashing"], default="minilm")
    ap.add_argument(
        "--sweep",
        default="",
        help="total episodes per size, comma separated (e.g. 100,1000,10000,100000,1000000): p50/p95 per size",
    )
    ap.add_argument(
        "--peer-max",
        type=int,
        default=10_000,
        help="largest size the peer (qdrant-client local mode, a Python scan) is measured at in --sweep",
    )
    args = ap.parse_args()
    if args.sweep:
        sizes = [int(x) for x in args.sweep.split(",") if x.strip()]
        swept = await sweep(sizes, args.requests, args.embedder, args.peer_max)
        result = {"sweep": swept, "embedder": args.embedder, "engine": "edge", "cpu_count": os.cpu_count()}
        print("RESULT " + json.dumps(result))
        return

    from tests.fakes.groq_server import FakeGroqServer

    with tempfile.TemporaryDirectory(prefix="idlock-bench-memory-") as tmp:
        data_dir = Path(tmp)
        ids = await populate(data_dir, args.characters, args.episodes, args.embedder, ("edge", "qdrant"))
        peer = await context_latency(data_dir, ids, "qdrant", args.embedder, args.requests)
        nats_srv = NatsServer(data_dir / "nats", port=0)
        nats_srv.start()
        env = {"IDLOCK_NATS_URL": nats_srv.url, "IDLOCK_MEMORY_TEXT_EMBEDDER": args.embedder}
        try:
            async with memory_service(data_dir, **env, IDLOCK_MEMORY_GROQ_API_KEY="") as stub:
                await timed(stub, requests(ids, 5, "warm-up", 0), expect_hit=False, engine="template")
                reqs = requests(ids, args.requests, "template", 1)
                tmpl = await timed(stub, reqs, expect_hit=False, engine="template")
                tmpl_again = await timed(stub, reqs, expect_hit=False, engine="template")
            with FakeGroqServer() as fake:
                fake.echo_user()
                fake.delay_s = args.llm_latency_ms / 1000
                llm_env = {
                    **env,
                    "IDLOCK_MEMORY_GROQ_API_KEY": "bench-key",
                    "IDLOCK_MEMORY_GROQ_BASE_URL": fake.base_url,
                    "IDLOCK_MEMORY_GROQ_MODEL": "fake-llm",
                    "IDLOCK_MEMORY_LLM_MAX_RETRIES": "0",
                }
                async with memory_service(data_dir, **llm_env) as stub:
                    reqs = requests(ids, args.llm_requests, "llm", 2)
                    miss = await timed(stub, reqs, expect_hit=False, engine="llm:fake-llm")
                    calls = fake.calls
                    hit = await timed(stub, reqs, expect_hit=True, engine="llm:fake-llm")
                    assert fake.calls == calls, "cached answers must not call the LLM"
            points = await peer_points(data_dir)
        finally:
            nats_srv.stop()

    result = {
        "characters": args.characters,
        "episodes_per_character": args.episodes,
        "embedder": args.embedder,
        "requests": len(tmpl),
        "p50_ms": pct(tmpl, 50),
        "p95_ms": pct(tmpl, 95),
        "engine": "edge",
        "peer_qdrant_local_p50_ms": pct(peer, 50),
        "peer_qdrant_local_p95_ms": pct(peer, 95),
        "p95_ratio_vs_peer": round(pct(tmpl, 95) / pct(peer, 95), 3),
        "peer_points": points,
        "template_again_p50_ms": pct(tmpl_again, 50),
        "template_again_p95_ms": pct(tmpl_again, 95),
        "llm_latency_ms": args.llm_latency_ms,
        "llm_requests": len(miss),
        "llm_uncached_p50_ms": pct(miss, 50),
        "llm_uncached_p95_ms": pct(miss, 95),
        "llm_cached_p50_ms": pct(hit, 50),
        "llm_cached_p95_ms": pct(hit, 95),
        "cache": "nats-kv",
        "transport": "grpc (client and server in one process)",
        "cpu_count": os.cpu_count(),
    }
    print(
        f"BuildContext over gRPC: template p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms "
        f"(qdrant-client local mode: p95 {result['peer_qdrant_local_p95_ms']} ms); "
        f"LLM at {args.llm_latency_ms:.0f} ms: uncached p95 {result['llm_uncached_p95_ms']} ms, "
        f"cached p95 {result['llm_cached_p95_ms']} ms"
    )
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
