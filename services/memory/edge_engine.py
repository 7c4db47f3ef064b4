"""Qdrant Edge: the embedded vector engine (one shard folder per collection under `root`).

Writes go to the shard's write-ahead log and return: a point is durable once `update` returns (a killed process
replays it at the next load), as the service's SQLite commits are without waiting for fsync. Segments are flushed in
a worker thread every `FLUSH_EVERY_S` and at close, which lets the log be truncated.

An erasure deletes the character's points, vacuums the segments that held them (`optimize`, every deleted point
counts: `deleted_threshold=0`), flushes, and then starts the log afresh: the log's files would otherwise keep the
erased payloads' bytes. Vector indexing is off (`indexing_threshold=0`): every search is filtered to one character,
which the `character_id` payload index (a tenant index) narrows to that character's points before any vector is
compared, so an HNSW graph over all points would cost memory and build time and never be used.

Reads and upserts of a few points take well under a millisecond and run on the caller's thread (under load a hop to
a worker thread costs more than the work); deletes, vacuums and bulk loads run in a worker thread, one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .vector_engine import INDEXED_FIELDS, PointFilter, PointWrite, StoredPoint

log = logging.getLogger(__name__)

_CONFIG_FILE = "edge_config.json"
#: upserts of at most this many points are applied on the caller's thread
INLINE_POINTS = 64
#: seconds between flushes of a shard that is being written
FLUSH_EVERY_S = 10.0


def _edge() -> Any:
    import qdrant_edge

    return qdrant_edge


class EdgeEngine:
    name = "edge"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.where = f"Qdrant Edge shards in {self.root}"
        self.root.mkdir(parents=True, exist_ok=True)
        self._shards: dict[str, Any] = {}
        self._write = asyncio.Lock()
        self._flushed_at: dict[str, float] = {}
        #: a flush running in a worker thread, per shard
        self._flushing: dict[str, asyncio.Future[None]] = {}
        for folder in sorted(self.root.iterdir()):
            if (folder / _CONFIG_FILE).is_file():
                self._open(folder.name)

    def _open(self, collection: str) -> Any:
        shard = _edge().EdgeShard.load(str(self.root / collection))
        self._shards[collection] = shard
        self._flushed_at[collection] = time.monotonic()
        return shard

    @staticmethod
    def _config(dim: int) -> Any:
        qe = _edge()
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine),
            optimizers=qe.EdgeOptimizersConfig(
                indexing_threshold=0, deleted_threshold=0.0, vacuum_min_vector_number=1
            ),
        )

    # ---- collections ----
    async def collection_exists(self, collection: str) -> bool:
        return collection in self._shards

    async def ensure_collection(self, collection: str, dim: int) -> None:
        if collection in self._shards:
            return
        async with self._write:
            if collection in self._shards:
                return
            await asyncio.to_thread(self._create, collection, dim)

    def _create(self, collection: str, dim: int) -> None:
        qe = _edge()
        path = self.root / collection
        if path.exists():  # a folder left by a create that did not finish
            shutil.rmtree(path)
        shard = qe.EdgeShard.create(str(path), self._config(dim))
        schemas = {
            "keyword": qe.KeywordIndexParams(is_tenant=True),
            "integer": qe.IntegerIndexParams(lookup=True, range=False),
        }
        for field, kind in INDEXED_FIELDS:
            schema = schemas[kind] if field == "character_id" else getattr(qe.PayloadSchemaType, kind.title())
            shard.update(qe.UpdateOperation.create_field_index(field, schema))
        shard.flush()
        self._shards[collection] = shard
        self._flushed_at[collection] = time.monotonic()

    async def collections(self) -> list[str]:
        return sorted(self._shards)

    def _shard(self, collection: str) -> Any:
        shard = self._shards.get(collection)
        if shard is None:
            raise KeyError(f"no collection {collection}")
        return shard

    # ---- writes ----
    async def upsert(self, collection: str, points: Sequence[PointWrite]) -> None:
        qe = _edge()
        op = qe.UpdateOperation.upsert_points([qe.Point(p.id, p.vector, p.payload) for p in points])
        if len(points) > INLINE_POINTS:
            await self._apply(collection, op)
            return
        if self._write.locked():  # an erasure may be starting the log afresh: the write waits for it
            async with self._write:
                self._shard(collection).update(op)
        else:
            self._shard(collection).update(op)
        self._flush_soon(collection)

    async def delete(self, collection: str, where: PointFilter) -> None:
        op = _edge().UpdateOperation.delete_points_by_filter(self._filter(where))
        await self._apply(collection, op)

    async def _apply(self, collection: str, op: Any) -> None:
        shard = self._shard(collection)
        async with self._write:
            await asyncio.to_thread(shard.update, op)
        self._flush_soon(collection)

    def _flush_soon(self, collection: str) -> None:
        """Flush the shard in a worker thread when its last flush is older than FLUSH_EVERY_S (not waited for)."""
        if collection in self._flushing or time.monotonic() - self._flushed_at[collection] < FLUSH_EVERY_S:
            return
        shard = self._shards[collection]

        def done(flush: asyncio.Future[None]) -> None:
            self._flushing.pop(collection, None)
            self._flushed_at[collection] = time.monotonic()
            if not flush.cancelled() and flush.exception() is not None:  # the log still holds the writes
                log.warning("flushing vector shard %s failed: %s", collection, flush.exception())

        flush = self._flushing[collection] = asyncio.ensure_future(asyncio.to_thread(shard.flush))
        flush.add_done_callback(done)

    async def _flushes_done(self, collections: Sequence[str]) -> None:
        running = [self._flushing[c] for c in collections if c in self._flushing]
        if running:
            await asyncio.wait(running)

    async def erase(self, collections: Sequence[str]) -> None:
        """Vacuum the segments that held deleted points, flush, and start each shard's log afresh."""
        async with self._write:
            await self._flushes_done(collections)
            for name in collections:
                shard = self._shards.get(name)
                if shard is None:
                    continue

                def vacuum(shard: Any = shard) -> None:
                    shard.optimize()
                    shard.flush()

                await asyncio.to_thread(vacuum)
                # on the loop: no read may reach the shard while it is closed
                shard.close()
                for f in (self.root / name / "wal").iterdir():
                    f.unlink()
                self._open(name)

    # ---- reads ----
    @staticmethod
    def _filter(where: PointFilter) -> Any:
        qe = _edge()
        must = [qe.FieldCondition(key="character_id", match=qe.MatchValue(value=where.character_id))]
        if where.type:
            must.append(qe.FieldCondition(key="type", match=qe.MatchValue(value=where.type)))
        must_not = None
        if where.exclude_scenes:
            any_of = qe.MatchAny(any=[int(s) for s in where.exclude_scenes])
            must_not = [qe.FieldCondition(key="scene_index", match=any_of)]
        return qe.Filter(must=must, must_not=must_not)

    async def retrieve(self, collection: str, ids: Sequence[str], with_vectors: bool) -> list[StoredPoint]:
        records = self._shard(collection).retrieve(list(ids), with_payload=True, with_vector=with_vectors)
        return [StoredPoint.of(r, with_vectors) for r in records]

    async def query_points(
        self, collection: str, vector: list[float], where: PointFilter, limit: int, with_vectors: bool
    ) -> list[StoredPoint]:
        qe = _edge()
        request = qe.QueryRequest(
            limit=limit,
            query=qe.Query.Nearest(vector),
            filter=self._filter(where),
            with_payload=True,
            with_vector=with_vectors,
        )
        return [
            StoredPoint.of(p, with_vectors, float(p.score)) for p in self._shard(collection).query(request)
        ]

    async def scroll(self, collection: str, where: PointFilter | None = None) -> list[StoredPoint]:
        qe = _edge()
        shard = self._shard(collection)
        out: list[StoredPoint] = []
        offset = None
        while True:
            request = qe.ScrollRequest(
                offset=offset,
                limit=1024,
                filter=self._filter(where) if where else None,
                with_payload=True,
                with_vector=True,
            )
            page, offset = shard.scroll(request)
            out += [StoredPoint.of(r, True) for r in page]
            if offset is None:
                return out

    async def count(self, collection: str, where: PointFilter) -> int:
        qe = _edge()
        return int(self._shard(collection).count(qe.CountRequest(exact=True, filter=self._filter(where))))

    async def close(self) -> None:
        async with self._write:
            await self._flushes_done(list(self._shards))
            shards, self._shards = self._shards, {}
            for shard in shards.values():
                shard.flush()
                shard.close()
