"""Qdrant collections of the memory service (local mode `path=...` or a server `url=...`).

Collections (names prefixed, e.g. `idlock_`):
- `semantic_faces_<encoder>_<dim>`: one `semantic` point per character (the aggregated identity) and one `view`
  point per reference image (diagnostics);
- `episode_faces_<encoder>_<dim>`: one point per episode (the generated face);
- `episode_text_<embedder>_<dim>`: one point per episode (its prompt/description text) for relevance retrieval.

Face collections carry the encoder and dimension in their name because vectors of different encoders never mix.
Payload: character_id, owner_id, type, encoder, created_at, image_refs, scene_index (episodes), episode_id.
Point ids are uuid5 of (kind, character, episode/view) so re-recording the same thing overwrites it.
"""

from __future__ import annotations

import asyncio
import re
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from idlock import metrics
from idlock.errors import InvalidInput

_NS = uuid.UUID("5b0f5a0e-8d1c-4c1e-9a57-1d0c0ffee001")
_NAME_RE = re.compile(r"[^a-z0-9]+")


def point_id(kind: str, character_id: str, sub: str = "") -> str:
    return str(uuid.uuid5(_NS, f"{kind}\x1f{character_id}\x1f{sub}"))


def _slug(s: str) -> str:
    return _NAME_RE.sub("-", s.casefold()).strip("-") or "x"


def _unit(v: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float32).reshape(-1)
    return arr / max(float(np.linalg.norm(arr)), 1e-12)


@dataclass(frozen=True)
class VectorHit:
    id: str
    score: float
    payload: dict[str, Any]
    vector: np.ndarray | None = None

    @property
    def episode_id(self) -> str | None:
        return self.payload.get("episode_id")

    @property
    def scene_index(self) -> int | None:
        return self.payload.get("scene_index")


#: characters whose episode-text points local mode keeps in memory (least recently searched ones are dropped)
TEXT_INDEX_CHARACTERS = 256


#: the Qdrant calls that read or write points, timed as `idlock_vector_seconds{op}`
_TIMED = frozenset({"upsert", "query_points", "scroll", "retrieve", "delete", "count"})


class MemoryVectors:
    """Async access to the memory collections. Build with `MemoryVectors.local(path)` or `.remote(url)`."""

    def __init__(self, client: Any, prefix: str = "idlock", *, local: bool = False) -> None:
        self._c = metrics.TimedCalls(client, _TIMED, metrics.VECTOR_SECONDS, metrics.VECTOR_ERRORS)
        #: Qdrant local mode evaluates payload filters in Python over every point of a collection and holds its
        #: folder for one process, so there a character's episode texts are read once, kept in memory, updated on
        #: every write, and ranked with numpy
        self.local = local
        self._prefix = _slug(prefix).replace("-", "_")
        self._known: dict[str, int] = {}
        self._lock = asyncio.Lock()
        #: (collection, character) -> point id -> (unit vector, payload); local mode only
        self._texts: OrderedDict[tuple[str, str], dict[str, tuple[np.ndarray, dict[str, Any]]]] = (
            OrderedDict()
        )

    @classmethod
    def local(cls, path: str, prefix: str = "idlock") -> MemoryVectors:
        from qdrant_client import AsyncQdrantClient

        vectors = cls(AsyncQdrantClient(path=str(path)), prefix, local=True)
        for name in list(getattr(vectors._c._client, "collections", {})):
            vectors._tune_local_storage(name)
        return vectors

    def _tune_local_storage(self, name: str) -> None:
        """Local mode stores each point with a SQLite commit on the event loop; in its default rollback-journal
        mode every commit waits for fsync (1.5 ms idle, 7+ ms measured under load). WAL with synchronous=NORMAL,
        as the service's own database runs, commits without waiting; a power cut can lose the newest points, not
        corrupt the file."""
        if not self.local:
            return
        connection = self._local_connection(name)
        if connection is None:
            return
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA secure_delete=ON")  # an erased point's bytes are zeroed

    @classmethod
    def remote(cls, url: str, api_key: str | None = None, prefix: str = "idlock") -> MemoryVectors:
        from qdrant_client import AsyncQdrantClient

        return cls(AsyncQdrantClient(url=url, api_key=api_key or None), prefix)

    @classmethod
    def from_settings(cls, s: Any, data_dir: Any = None) -> MemoryVectors:
        if s.qdrant_url:
            return cls.remote(s.qdrant_url, s.qdrant_api_key.get_secret_value(), s.collection_prefix)
        from pathlib import Path

        path = s.qdrant_path or Path(data_dir or Path.cwd() / ".idlock") / "qdrant"
        Path(path).mkdir(parents=True, exist_ok=True)
        return cls.local(str(path), s.collection_prefix)

    async def close(self) -> None:
        await self._c.close()

    # ---- collections ----
    def _name(self, kind: str, model: str, dim: int) -> str:
        return f"{self._prefix}_{kind}_{_slug(model).replace('-', '_')}_{dim}"

    async def _ensure(self, name: str, dim: int) -> None:
        from qdrant_client import models as qm

        if self._known.get(name) == dim:
            return
        async with self._lock:
            if self._known.get(name) == dim:
                return
            if not await self._c.collection_exists(name):
                await self._c.create_collection(
                    name, vectors_config=qm.VectorParams(size=dim, distance=qm.Distance.COSINE)
                )
                self._tune_local_storage(name)
                for field, schema in (
                    ("character_id", qm.PayloadSchemaType.KEYWORD),
                    ("type", qm.PayloadSchemaType.KEYWORD),
                    ("scene_index", qm.PayloadSchemaType.INTEGER),
                ):
                    with warnings.catch_warnings():  # local mode: indexes are a no-op and say so
                        warnings.simplefilter("ignore", UserWarning)
                        await self._c.create_payload_index(name, field_name=field, field_schema=schema)
            self._known[name] = dim

    async def _collections(self) -> list[str]:
        res = await self._c.get_collections()
        return sorted(c.name for c in res.collections if c.name.startswith(self._prefix + "_"))

    @staticmethod
    def _vec(v: Sequence[float] | np.ndarray) -> list[float]:
        arr = np.asarray(v, dtype=np.float32).reshape(-1)
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise InvalidInput("vector is empty or not finite")
        return arr.tolist()

    @staticmethod
    def _flt(character_id: str, type_: str | None = None) -> Any:
        from qdrant_client import models as qm

        must = [qm.FieldCondition(key="character_id", match=qm.MatchValue(value=character_id))]
        if type_:
            must.append(qm.FieldCondition(key="type", match=qm.MatchValue(value=type_)))
        return qm.Filter(must=must)

    async def _upsert(
        self, name: str, dim: int, points: list[tuple[str, list[float], dict[str, Any]]]
    ) -> None:
        from qdrant_client import models as qm

        for _, v, _p in points:
            if len(v) != dim:
                raise InvalidInput(f"vector has {len(v)} dimensions, {name} holds {dim}")
        await self._ensure(name, dim)
        await self._c.upsert(
            name, points=[qm.PointStruct(id=i, vector=v, payload=p) for i, v, p in points], wait=True
        )

    # ---- writes ----
    async def upsert_semantic(
        self,
        character_id: str,
        owner_id: str,
        encoder: str,
        vector: Sequence[float] | np.ndarray,
        per_view: Sequence[Sequence[float] | np.ndarray] = (),
        image_refs: Sequence[str] = (),
    ) -> str:
        """The character's identity vector (+ one point per reference view); returns the semantic point id."""
        v = self._vec(vector)
        dim = len(v)
        name = self._name("semantic_faces", encoder, dim)
        now = datetime.now(UTC).isoformat()
        base = {"character_id": character_id, "owner_id": owner_id, "encoder": encoder, "created_at": now}
        sid = point_id("semantic", character_id)
        pts = [(sid, v, {**base, "type": "semantic", "image_refs": list(image_refs)})]
        for i, pv in enumerate(per_view):
            ref = [image_refs[i]] if i < len(image_refs) else []
            pts.append(
                (
                    point_id("view", character_id, str(i)),
                    self._vec(pv),
                    {**base, "type": "view", "view_index": i, "image_refs": ref},
                )
            )
        # a re-registration with fewer views must not keep stale view points
        if await self._c.collection_exists(name):
            await self._c.delete(name, points_selector=self._flt(character_id, "view"), wait=True)
        await self._upsert(name, dim, pts)
        return sid

    def _episode_face_point(
        self,
        character_id: str,
        owner_id: str,
        episode_id: str,
        scene_index: int,
        encoder: str,
        vector: Sequence[float] | np.ndarray,
        image_refs: Sequence[str] = (),
    ) -> tuple[str, list[float], dict[str, Any]]:
        payload = {
            "character_id": character_id,
            "owner_id": owner_id,
            "type": "episodic",
            "encoder": encoder,
            "episode_id": episode_id,
            "scene_index": int(scene_index),
            "image_refs": list(image_refs),
            "created_at": datetime.now(UTC).isoformat(),
        }
        return point_id("episode_face", character_id, episode_id), self._vec(vector), payload

    def _episode_text_point(
        self,
        character_id: str,
        owner_id: str,
        episode_id: str,
        scene_index: int,
        embedder: str,
        vector: Sequence[float] | np.ndarray,
        text: str = "",
    ) -> tuple[str, list[float], dict[str, Any]]:
        payload = {
            "character_id": character_id,
            "owner_id": owner_id,
            "type": "episode_text",
            "encoder": embedder,
            "episode_id": episode_id,
            "scene_index": int(scene_index),
            "text": text[:2000],
            "created_at": datetime.now(UTC).isoformat(),
        }
        return point_id("episode_text", character_id, episode_id), self._vec(vector), payload

    async def upsert_episode_face(
        self,
        character_id: str,
        owner_id: str,
        episode_id: str,
        scene_index: int,
        encoder: str,
        vector: Sequence[float] | np.ndarray,
        image_refs: Sequence[str] = (),
    ) -> str:
        pid, v, payload = self._episode_face_point(
            character_id, owner_id, episode_id, scene_index, encoder, vector, image_refs
        )
        await self._upsert(self._name("episode_faces", encoder, len(v)), len(v), [(pid, v, payload)])
        return pid

    async def upsert_episode_text(
        self,
        character_id: str,
        owner_id: str,
        episode_id: str,
        scene_index: int,
        embedder: str,
        vector: Sequence[float] | np.ndarray,
        text: str = "",
    ) -> str:
        pid, v, payload = self._episode_text_point(
            character_id, owner_id, episode_id, scene_index, embedder, vector, text
        )
        name = self._name("episode_text", embedder, len(v))
        await self._upsert(name, len(v), [(pid, v, payload)])
        known = self._texts.get((name, character_id))
        if known is not None:
            known[pid] = (_unit(v), payload)
        return pid

    async def upsert_episode_faces_bulk(
        self,
        encoder: str,
        items: Sequence[tuple[str, str, str, int, Sequence[float], Sequence[str]]],
        batch: int = 512,
    ) -> int:
        """Many episode faces at once: items of (character_id, owner_id, episode_id, scene_index, vector,
        image_refs); the same points `upsert_episode_face` writes (bulk loads, re-indexing, benchmarks)."""
        pts = [self._episode_face_point(c, o, e, s, encoder, v, r) for c, o, e, s, v, r in items]
        return await self._upsert_batches("episode_faces", encoder, pts, batch)

    async def upsert_episode_texts_bulk(
        self,
        embedder: str,
        items: Sequence[tuple[str, str, str, int, Sequence[float], str]],
        batch: int = 512,
    ) -> int:
        """Many episode texts at once: items of (character_id, owner_id, episode_id, scene_index, vector, text)."""
        pts = [self._episode_text_point(c, o, e, s, embedder, v, t) for c, o, e, s, v, t in items]
        for c in {item[0] for item in items}:  # read again on the next search
            self._forget_texts(c)
        return await self._upsert_batches("episode_text", embedder, pts, batch)

    async def _upsert_batches(
        self, kind: str, model: str, pts: list[tuple[str, list[float], dict[str, Any]]], batch: int
    ) -> int:
        if not pts:
            return 0
        dim = len(pts[0][1])
        name = self._name(kind, model, dim)
        for i in range(0, len(pts), batch):
            await self._upsert(name, dim, pts[i : i + batch])
        return len(pts)

    # ---- reads ----
    async def get_semantic(self, character_id: str, encoder: str, dim: int) -> np.ndarray | None:
        name = self._name("semantic_faces", encoder, dim)
        if not await self._c.collection_exists(name):
            return None
        pts = await self._c.retrieve(name, ids=[point_id("semantic", character_id)], with_vectors=True)
        if not pts:
            return None
        return np.asarray(pts[0].vector, dtype=np.float32)

    async def _search(
        self,
        name: str,
        character_id: str,
        query: Sequence[float] | np.ndarray,
        limit: int,
        type_: str | None,
        with_vectors: bool = False,
        exclude_scenes: Sequence[int] = (),
    ) -> list[VectorHit]:
        from qdrant_client import models as qm

        if limit <= 0 or not await self._c.collection_exists(name):
            return []
        flt = self._flt(character_id, type_)
        if exclude_scenes:
            flt.must_not = [
                qm.FieldCondition(key="scene_index", match=qm.MatchAny(any=[int(s) for s in exclude_scenes]))
            ]
        res = await self._c.query_points(
            name,
            query=self._vec(query),
            query_filter=flt,
            limit=limit,
            with_payload=True,
            with_vectors=with_vectors,
        )
        return [
            VectorHit(
                str(p.id),
                float(p.score),
                dict(p.payload or {}),
                np.asarray(p.vector, dtype=np.float32) if with_vectors and p.vector is not None else None,
            )
            for p in res.points
        ]

    async def _character_texts(
        self, name: str, character_id: str
    ) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """Local mode: the character's episode-text points, read from the collection on first use (the local
        client never suspends, so no write can slip in between the pages)."""
        key = (name, character_id)
        known = self._texts.get(key)
        if known is not None:
            self._texts.move_to_end(key)
            return known
        known = {}
        offset = None
        while True:
            page, offset = await self._c.scroll(
                name,
                scroll_filter=self._flt(character_id, "episode_text"),
                limit=1024,
                offset=offset,
                with_payload=True,
                with_vectors=True,
            )
            for p in page:
                if p.vector is not None:
                    known[str(p.id)] = (_unit(p.vector), dict(p.payload or {}))
            if offset is None:
                break
        self._texts[key] = known
        while len(self._texts) > TEXT_INDEX_CHARACTERS:
            self._texts.popitem(last=False)
        return known

    def _forget_texts(self, character_id: str) -> None:
        for key in [k for k in self._texts if k[1] == character_id]:
            del self._texts[key]

    async def _rank_character_texts(
        self, name: str, character_id: str, query: list[float], limit: int, exclude_scenes: Sequence[int]
    ) -> list[VectorHit]:
        """Cosine ranking of the character's episode texts held in memory (local mode)."""
        if limit <= 0 or not await self._c.collection_exists(name):
            return []
        excluded = {int(s) for s in exclude_scenes}
        pts = [
            (pid, vec, payload)
            for pid, (vec, payload) in (await self._character_texts(name, character_id)).items()
            if payload.get("scene_index") not in excluded
        ]
        if not pts:
            return []
        scores = np.stack([vec for _, vec, _ in pts]) @ _unit(query)
        order = sorted(range(len(pts)), key=lambda i: (-float(scores[i]), pts[i][0]))[:limit]
        return [VectorHit(pts[i][0], float(scores[i]), dict(pts[i][2])) for i in order]

    async def search_episode_faces(
        self, character_id: str, encoder: str, query: Sequence[float] | np.ndarray, limit: int = 3
    ) -> list[VectorHit]:
        q = self._vec(query)
        return await self._search(
            self._name("episode_faces", encoder, len(q)),
            character_id,
            q,
            limit,
            "episodic",
            with_vectors=True,
        )

    async def search_episode_text(
        self,
        character_id: str,
        embedder: str,
        query: Sequence[float] | np.ndarray,
        limit: int = 3,
        exclude_scenes: Sequence[int] = (),
    ) -> list[VectorHit]:
        """The character's episode texts most similar to `query`."""
        q = self._vec(query)
        name = self._name("episode_text", embedder, len(q))
        if self.local:  # ranked in memory: timed here, as a server's query_points is by the client
            with metrics.timed(metrics.VECTOR_SECONDS, metrics.VECTOR_ERRORS, op="search_local"):
                return await self._rank_character_texts(name, character_id, q, limit, exclude_scenes)
        return await self._search(
            name,
            character_id,
            q,
            limit,
            "episode_text",
            exclude_scenes=exclude_scenes,
        )

    # ---- erasure / counts ----
    async def count_character(self, character_id: str) -> int:
        total = 0
        for name in await self._collections():
            r = await self._c.count(name, count_filter=self._flt(character_id), exact=True)
            total += r.count
        return total

    async def delete_character(self, character_id: str) -> int:
        """Delete every point of the character in every memory collection; returns how many there were."""
        self._forget_texts(character_id)
        n = 0
        emptied = []
        for name in await self._collections():
            r = await self._c.count(name, count_filter=self._flt(character_id), exact=True)
            if r.count:
                await self._c.delete(name, points_selector=self._flt(character_id), wait=True)
                n += r.count
                emptied.append(name)
        if self.local:  # on the loop: the client uses its SQLite connection from this thread
            self._scrub_local_files(emptied)
        return n

    def _local_connection(self, name: str) -> Any:
        """None in in-memory local mode, or with a client whose internals moved."""
        collection = getattr(self._c._client, "collections", {}).get(name)
        return getattr(getattr(collection, "storage", None), "storage", None)

    def _scrub_local_files(self, names: list[str]) -> None:
        """Rebuild the named collections' SQLite files without the free pages the delete left (an erased
        episode's text would stay readable there), and empty their WAL."""
        for name in names:
            connection = self._local_connection(name)
            if connection is not None:
                connection.commit()
                connection.execute("VACUUM")
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
