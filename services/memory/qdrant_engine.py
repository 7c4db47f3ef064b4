"""qdrant-client: a Qdrant server (`url=...`, the k8s path), or the client's local mode (`path=...`).

Local mode evaluates payload filters in Python over every point of a collection; it is what the tests run the
server path's calls against and the benchmark's peer, not the embedded default (see `vector_engine.py`).
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Sequence
from typing import Any

from .vector_engine import INDEXED_FIELDS, PointFilter, PointWrite, StoredPoint


class QdrantEngine:
    name = "qdrant"

    def __init__(self, *, url: str = "", path: str = "", api_key: str = "") -> None:
        from qdrant_client import AsyncQdrantClient

        self.local = not url
        self.where = f"Qdrant server at {url}" if url else f"qdrant-client local mode in {path}"
        self._client = (
            AsyncQdrantClient(url=url, api_key=api_key or None) if url else AsyncQdrantClient(path=path)
        )
        self._known: dict[str, int] = {}
        self._lock = asyncio.Lock()
        for name in list(getattr(self._client._client, "collections", {})):
            self._tune_local_storage(name)

    # ---- collections ----
    async def collection_exists(self, collection: str) -> bool:
        return collection in self._known or await self._client.collection_exists(collection)

    async def ensure_collection(self, collection: str, dim: int) -> None:
        from qdrant_client import models as qm

        if self._known.get(collection) == dim:
            return
        async with self._lock:
            if self._known.get(collection) == dim:
                return
            if not await self._client.collection_exists(collection):
                params = qm.VectorParams(size=dim, distance=qm.Distance.COSINE)
                await self._client.create_collection(collection, vectors_config=params)
                self._tune_local_storage(collection)
                schemas = {"keyword": qm.PayloadSchemaType.KEYWORD, "integer": qm.PayloadSchemaType.INTEGER}
                for field, kind in INDEXED_FIELDS:
                    with warnings.catch_warnings():  # local mode: indexes are a no-op and say so
                        warnings.simplefilter("ignore", UserWarning)
                        await self._client.create_payload_index(
                            collection, field_name=field, field_schema=schemas[kind]
                        )
            self._known[collection] = dim

    async def collections(self) -> list[str]:
        res = await self._client.get_collections()
        return sorted(c.name for c in res.collections)

    @staticmethod
    def _filter(where: PointFilter) -> Any:
        from qdrant_client import models as qm

        must = [qm.FieldCondition(key="character_id", match=qm.MatchValue(value=where.character_id))]
        if where.type:
            must.append(qm.FieldCondition(key="type", match=qm.MatchValue(value=where.type)))
        flt = qm.Filter(must=must)
        if where.exclude_scenes:
            any_of = qm.MatchAny(any=[int(s) for s in where.exclude_scenes])
            flt.must_not = [qm.FieldCondition(key="scene_index", match=any_of)]
        return flt

    # ---- writes ----
    async def upsert(self, collection: str, points: Sequence[PointWrite]) -> None:
        from qdrant_client import models as qm

        structs = [qm.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points]
        await self._client.upsert(collection, points=structs, wait=True)

    async def delete(self, collection: str, where: PointFilter) -> None:
        await self._client.delete(collection, points_selector=self._filter(where), wait=True)

    async def erase(self, collections: Sequence[str]) -> None:
        if (
            self.local
        ):  # a server reclaims deleted points itself; local mode's SQLite keeps them in free pages
            self._scrub_local_files(collections)

    # ---- reads ----
    async def retrieve(self, collection: str, ids: Sequence[str], with_vectors: bool) -> list[StoredPoint]:
        points = await self._client.retrieve(collection, ids=list(ids), with_vectors=with_vectors)
        return [StoredPoint.of(p, with_vectors) for p in points]

    async def query_points(
        self, collection: str, vector: list[float], where: PointFilter, limit: int, with_vectors: bool
    ) -> list[StoredPoint]:
        res = await self._client.query_points(
            collection,
            query=vector,
            query_filter=self._filter(where),
            limit=limit,
            with_payload=True,
            with_vectors=with_vectors,
        )
        return [StoredPoint.of(p, with_vectors, float(p.score)) for p in res.points]

    async def scroll(self, collection: str, where: PointFilter | None = None) -> list[StoredPoint]:
        out: list[StoredPoint] = []
        offset = None
        while True:
            page, offset = await self._client.scroll(
                collection,
                scroll_filter=self._filter(where) if where else None,
                limit=1024,
                offset=offset,
                with_payload=True,
                with_vectors=True,
            )
            out += [StoredPoint.of(p, True) for p in page]
            if offset is None:
                return out

    async def count(self, collection: str, where: PointFilter) -> int:
        return (await self._client.count(collection, count_filter=self._filter(where), exact=True)).count

    async def close(self) -> None:
        await self._client.close()

    # ---- local mode's SQLite files ----
    def _local_connection(self, name: str) -> Any:
        """None for a server, in-memory local mode, or a client whose internals moved."""
        collection = getattr(self._client._client, "collections", {}).get(name)
        return getattr(getattr(collection, "storage", None), "storage", None)

    def _tune_local_storage(self, name: str) -> None:
        """Local mode stores each point with a SQLite commit on the event loop; in its default rollback-journal
        mode every commit waits for fsync. WAL with synchronous=NORMAL, as the service's own database runs, commits
        without waiting; a power cut can lose the newest points, not corrupt the file."""
        connection = self._local_connection(name)
        if connection is None:
            return
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("PRAGMA secure_delete=ON")  # an erased point's bytes are zeroed

    def _scrub_local_files(self, names: Sequence[str]) -> None:
        """Rebuild the named collections' SQLite files without the free pages a delete left, and empty their WAL."""
        for name in names:
            connection = self._local_connection(name)
            if connection is not None:
                connection.commit()
                connection.execute("VACUUM")
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
