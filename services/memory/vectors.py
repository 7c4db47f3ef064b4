"""The memory service's vector collections, over a vector engine (`vector_engine.py`: Qdrant Edge embedded, the
default; or qdrant-client against a server).

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

import logging
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from idlock import metrics
from idlock.errors import InvalidInput

from .vector_engine import PointFilter, PointWrite, StoredPoint, VectorEngine

log = logging.getLogger(__name__)

_NS = uuid.UUID("5b0f5a0e-8d1c-4c1e-9a57-1d0c0ffee001")
_NAME_RE = re.compile(r"[^a-z0-9]+")


def point_id(kind: str, character_id: str, sub: str = "") -> str:
    return str(uuid.uuid5(_NS, f"{kind}\x1f{character_id}\x1f{sub}"))


def _slug(s: str) -> str:
    return _NAME_RE.sub("-", s.casefold()).strip("-") or "x"


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


#: the engine calls that read or write points, timed as `idlock_vector_seconds{op}`
_TIMED = frozenset({"upsert", "query_points", "scroll", "retrieve", "delete", "count"})


def _data_dir(data_dir: Any) -> Path:
    return Path(data_dir or Path.cwd() / ".idlock")


def _local_mode_path(s: Any, data_dir: Any) -> Path:
    """qdrant-client local mode's folder: the `qdrant` engine's, and where an earlier embedded default kept points."""
    return Path(s.qdrant_path or _data_dir(data_dir) / "qdrant")


def _hit(p: StoredPoint) -> VectorHit:
    vector = np.asarray(p.vector, dtype=np.float32) if p.vector is not None else None
    return VectorHit(p.id, p.score, p.payload, vector)


class MemoryVectors:
    """Async access to the memory collections. Build with `MemoryVectors.edge(folder)` (embedded),
    `.remote(url)` (a Qdrant server) or `.from_settings(...)`."""

    def __init__(self, engine: VectorEngine, prefix: str = "idlock") -> None:
        self.engine = engine
        self._c = metrics.TimedCalls(engine, _TIMED, metrics.VECTOR_SECONDS, metrics.VECTOR_ERRORS)
        self._prefix = _slug(prefix).replace("-", "_")

    @classmethod
    def edge(cls, path: str | Path, prefix: str = "idlock") -> MemoryVectors:
        from .edge_engine import EdgeEngine

        return cls(EdgeEngine(path), prefix)

    @classmethod
    def qdrant_local(cls, path: str | Path, prefix: str = "idlock") -> MemoryVectors:
        """qdrant-client's local mode: the server path's calls without a server (tests, the benchmark's peer)."""
        from .qdrant_engine import QdrantEngine

        return cls(QdrantEngine(path=str(path)), prefix)

    @classmethod
    def remote(cls, url: str, api_key: str | None = None, prefix: str = "idlock") -> MemoryVectors:
        from .qdrant_engine import QdrantEngine

        return cls(QdrantEngine(url=url, api_key=api_key or ""), prefix)

    @classmethod
    def from_settings(cls, s: Any, data_dir: Any = None) -> MemoryVectors:
        if s.qdrant_url:
            return cls.remote(s.qdrant_url, s.qdrant_api_key.get_secret_value(), s.collection_prefix)
        if s.vector_engine == "qdrant":
            path = _local_mode_path(s, data_dir)
            path.mkdir(parents=True, exist_ok=True)
            return cls.qdrant_local(path, s.collection_prefix)
        return cls.edge(s.vector_path or _data_dir(data_dir) / "vectors", s.collection_prefix)

    @classmethod
    async def open(cls, s: Any, data_dir: Any = None) -> MemoryVectors:
        """`from_settings`; with the Edge shards, the points of an earlier local-mode folder are moved into them
        first (copied, then the folder removed, so an erasure has one copy to erase). Copying is idempotent: one a
        crash cut short is done again at the next start, before the service answers anything."""
        vectors = cls.from_settings(s, data_dir)
        older_path = _local_mode_path(s, data_dir)
        if vectors.engine.name != "edge" or not (older_path / "collection").is_dir():
            return vectors
        older = cls.qdrant_local(older_path, s.collection_prefix)
        try:
            copied = await vectors.adopt(older)
        finally:
            await older.close()
        shutil.rmtree(older_path)
        log.info("moved %d points from qdrant-client local mode (%s) into Qdrant Edge", copied, older_path)
        return vectors

    async def close(self) -> None:
        await self._c.close()

    async def adopt(self, older: MemoryVectors) -> int:
        """Copy every point of `older` (an earlier engine's folder) here, same ids; returns how many. The embedded
        default moved from qdrant-client's local mode to Qdrant Edge: an existing memory keeps its episodes."""
        copied = 0
        for name in await older._collections():
            points = await older._c.scroll(name, None)
            if not points:
                continue
            dim = len(points[0].vector or ())
            for i in range(0, len(points), 512):
                batch = [(p.id, p.vector or [], p.payload) for p in points[i : i + 512]]
                await self._upsert(name, dim, batch)
            copied += len(points)
        return copied

    # ---- collections ----
    def _name(self, kind: str, model: str, dim: int) -> str:
        return f"{self._prefix}_{kind}_{_slug(model).replace('-', '_')}_{dim}"

    async def _collections(self) -> list[str]:
        return [c for c in await self._c.collections() if c.startswith(self._prefix + "_")]

    @staticmethod
    def _vec(v: Sequence[float] | np.ndarray) -> list[float]:
        arr = np.asarray(v, dtype=np.float32).reshape(-1)
        if arr.size == 0 or not np.all(np.isfinite(arr)):
            raise InvalidInput("vector is empty or not finite")
        return arr.tolist()

    async def _upsert(
        self, name: str, dim: int, points: list[tuple[str, list[float], dict[str, Any]]]
    ) -> None:
        for _, v, _p in points:
            if len(v) != dim:
                raise InvalidInput(f"vector has {len(v)} dimensions, {name} holds {dim}")
        await self._c.ensure_collection(name, dim)
        await self._c.upsert(name, [PointWrite(i, v, p) for i, v, p in points])

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
            await self._c.delete(name, PointFilter(character_id, "view"))
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
        await self._upsert(self._name("episode_text", embedder, len(v)), len(v), [(pid, v, payload)])
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
        pts = await self._c.retrieve(name, [point_id("semantic", character_id)], True)
        if not pts or pts[0].vector is None:
            return None
        return np.asarray(pts[0].vector, dtype=np.float32)

    async def _search(
        self,
        name: str,
        query: list[float],
        where: PointFilter,
        limit: int,
        with_vectors: bool = False,
    ) -> list[VectorHit]:
        if limit <= 0 or not await self._c.collection_exists(name):
            return []
        return [_hit(p) for p in await self._c.query_points(name, query, where, limit, with_vectors)]

    async def search_episode_faces(
        self, character_id: str, encoder: str, query: Sequence[float] | np.ndarray, limit: int = 3
    ) -> list[VectorHit]:
        q = self._vec(query)
        name = self._name("episode_faces", encoder, len(q))
        return await self._search(name, q, PointFilter(character_id, "episodic"), limit, with_vectors=True)

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
        where = PointFilter(character_id, "episode_text", tuple(int(s) for s in exclude_scenes))
        return await self._search(name, q, where, limit)

    # ---- erasure / counts ----
    async def count_character(self, character_id: str) -> int:
        total = 0
        for name in await self._collections():
            total += await self._c.count(name, PointFilter(character_id))
        return total

    async def character_points(self, character_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(collection, payload) of every point, optionally of one character (diagnostics, erasure checks)."""
        out = []
        for name in await self._collections():
            where = PointFilter(character_id) if character_id is not None else None
            out += [(name, p.payload) for p in await self._c.scroll(name, where)]
        return out

    async def delete_character(self, character_id: str) -> int:
        """Delete every point of the character in every memory collection, leaving none of their bytes in the
        engine's files; returns how many there were."""
        n = 0
        emptied = []
        for name in await self._collections():
            found = await self._c.count(name, PointFilter(character_id))
            if found:
                await self._c.delete(name, PointFilter(character_id))
                n += found
                emptied.append(name)
        if emptied:
            await self.engine.erase(emptied)
        return n
