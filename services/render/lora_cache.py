"""LoRA weights on the render replica's disk, for the diffusers pipeline (which loads from a path).

A file is named by its content hash; a render whose reference names a cached hash asks object storage only whether
the object still exists (LoRA weights run to hundreds of MB), not for its bytes. A file lives only as long as its
stored object: beside it, `<hash>.sources` lists the object URIs it came from, and a sweep (at start and every
`IDLOCK_RENDER_LORA_CACHE_SWEEP_S`) deletes a file none of whose sources exists any more, and unloads its adapter.
Erasing a character deletes its LoRA objects (the trainer), so no copy of its weights outlives the erasure on a
render replica by more than one sweep, whether or not the replica was running when it happened.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from idlock import refs
from idlock.errors import InvalidInput
from idlock.files import replace_whole
from idlock.storage import ObjectStore
from idlock.v1 import common_pb2

log = logging.getLogger("idlock.render")

WEIGHTS = ".safetensors"
SOURCES = ".sources"


class LoraCache:
    def __init__(
        self,
        store: ObjectStore,
        folder: Path,
        forget: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.folder = folder
        #: unloads the adapter loaded from a path that the sweep deletes
        self.forget = forget
        #: (hash, uri) pairs this process has seen listed: a render of a cached LoRA reads no sources file
        self._listed: set[tuple[str, str]] = set()

    async def path(self, lora: common_pb2.LoraRef) -> str:
        """The local file holding `lora`'s weights. A file already cached under the reference's sha256 is used
        once its stored object is seen to exist (an erased LoRA is not rendered with); otherwise the weights are
        fetched, checked against the sha256, and written."""
        cached = self._cached(lora.sha256)
        if cached is not None and await self.store.exists(lora.uri):
            await self._add_source(cached.name.removesuffix(WEIGHTS), lora.uri)
            return str(cached)
        data = await refs.fetch_ref(self.store, lora, "lora")
        digest = hashlib.sha256(data).hexdigest()
        await self._add_source(digest, lora.uri)
        weights = self.folder / f"{digest}{WEIGHTS}"
        if not weights.exists():
            # two renders may fetch it at once: each writes a whole copy of its own, off the loop
            await asyncio.to_thread(replace_whole, weights, data, durable=False)
        return str(weights)

    def _cached(self, sha256: str) -> Path | None:
        digest = sha256.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            return None
        weights = self.folder / f"{digest}{WEIGHTS}"
        return weights if weights.exists() else None

    async def _add_source(self, digest: str, uri: str) -> None:
        """List `uri` beside the file (before the file is written: a sweep never finds weights of no source)."""
        if (digest, uri) in self._listed:
            return
        sources = self.folder / f"{digest}{SOURCES}"
        known = await asyncio.to_thread(_read_sources, sources)
        if uri not in known:
            await asyncio.to_thread(replace_whole, sources, "\n".join([*known, uri]).encode(), durable=False)
        self._listed.add((digest, uri))

    async def sweep(self) -> list[str]:
        """Delete every cached file whose stored objects are all gone (and one whose sources were never
        written); returns the hashes deleted."""
        gone: list[str] = []
        for weights in sorted(self.folder.glob(f"*{WEIGHTS}")):
            digest = weights.name.removesuffix(WEIGHTS)
            sources = self.folder / f"{digest}{SOURCES}"
            if await self._any_exists(await asyncio.to_thread(_read_sources, sources)):
                continue
            if self.forget is not None:
                await self.forget(str(weights))
            self._listed = {pair for pair in self._listed if pair[0] != digest}
            await asyncio.to_thread(_unlink, weights, sources)
            gone.append(digest)
        if gone:
            log.info("LoRA cache: %d file(s) deleted, their stored weights are gone", len(gone))
        return gone

    async def _any_exists(self, uris: list[str]) -> bool:
        for uri in uris:
            try:
                if await self.store.exists(uri):
                    return True
            except InvalidInput:  # a URI this store cannot name (its settings changed): nothing here to keep
                continue
            except Exception as e:  # noqa: BLE001 - storage unreachable: keep the file, the next sweep decides
                log.warning("LoRA cache: cannot tell whether %s exists (%s); kept", uri, e)
                return True
        return False

    async def sweep_every(self, interval_s: float) -> None:
        """Sweep now and then every `interval_s` seconds, until cancelled."""
        while True:
            try:
                await self.sweep()
            except Exception:  # a failed sweep is retried at the next interval
                log.exception("LoRA cache sweep failed")
            await asyncio.sleep(interval_s)


def _unlink(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _read_sources(path: Path) -> list[str]:
    try:
        return [line for line in path.read_text().splitlines() if line]
    except FileNotFoundError:
        return []


__all__ = ["LoraCache"]
