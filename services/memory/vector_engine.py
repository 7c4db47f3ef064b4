"""What the memory collections need of a vector engine, and the two that provide it.

- `edge` (`edge_engine.py`, the embedded default): Qdrant Edge shards in the service's own folder. Payload indexes on
  `character_id`, `type` and `scene_index` make a character's search read that character's points only, so its cost
  follows the character's story, not the store's size. No server.
- `qdrant` (`qdrant_engine.py`): qdrant-client against a Qdrant server (`qdrant_url`, the k8s path). Without a URL it
  runs the client's local mode, which evaluates filters in Python over every point: kept for tests of the server path's
  calls and as the benchmark's peer, never the default.

Both take the same calls and are run by the same tests (`tests/integration/memory/test_memory_vectors.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

#: payload fields every collection indexes
INDEXED_FIELDS = (("character_id", "keyword"), ("type", "keyword"), ("scene_index", "integer"))


@dataclass(frozen=True)
class PointFilter:
    """The points of one character, optionally of one type, optionally without some scenes."""

    character_id: str
    type: str | None = None
    exclude_scenes: tuple[int, ...] = ()


@dataclass(frozen=True)
class StoredPoint:
    id: str
    payload: dict[str, Any]
    vector: list[float] | None = None
    score: float = 0.0

    @classmethod
    def of(cls, p: Any, with_vectors: bool, score: float = 0.0) -> StoredPoint:
        """From either engine's point or record (both carry `id`, `payload`, `vector`)."""
        vector = list(p.vector) if with_vectors and p.vector is not None else None
        return cls(str(p.id), dict(p.payload or {}), vector, score)


@dataclass(frozen=True)
class PointWrite:
    id: str
    vector: list[float]
    payload: dict[str, Any] = field(default_factory=dict)


class VectorEngine(Protocol):
    """Collections named by the caller, each of one cosine vector size. Writes are durable when they return."""

    name: str
    #: what and where, for the start-up log ("Qdrant Edge shards in /data/vectors")
    where: str

    async def collection_exists(self, collection: str) -> bool: ...

    async def ensure_collection(self, collection: str, dim: int) -> None: ...

    async def collections(self) -> list[str]: ...

    async def upsert(self, collection: str, points: Sequence[PointWrite]) -> None: ...

    async def delete(self, collection: str, where: PointFilter) -> None: ...

    async def retrieve(
        self, collection: str, ids: Sequence[str], with_vectors: bool
    ) -> list[StoredPoint]: ...

    async def query_points(
        self, collection: str, vector: list[float], where: PointFilter, limit: int, with_vectors: bool
    ) -> list[StoredPoint]: ...

    async def scroll(self, collection: str, where: PointFilter | None = None) -> list[StoredPoint]: ...

    async def count(self, collection: str, where: PointFilter) -> int: ...

    async def erase(self, collections: Sequence[str]) -> None:
        """Leave no bytes of deleted points in the engine's files (after a character's erasure)."""
        ...

    async def close(self) -> None: ...
