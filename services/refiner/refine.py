"""The refiner's use case: repair the face of one image (seed 4.x). Fetch the image and the character (identity
and references), run the attempts (`pipeline.refine`: best of N, never worse), store every attempt's image and
say which is best. Plain Python over the runtime; the servicer maps protos."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

import numpy as np

from idlock import metrics, refs
from idlock.errors import InvalidInput, PreconditionFailed
from idlock.faces.copies import CopyCheck
from idlock.faces.engine import IdentityEngine, get_engine
from idlock.faces.settings import FaceSettings
from idlock.images import decode_image, encode_png
from idlock.provenance import mark_image
from idlock.settings import MeshSettings, PathsSettings, StorageSettings
from idlock.storage import ObjectStore, open_store
from idlock.threads import model_executor
from idlock.v1 import common_pb2, render_service_pb2
from services.refiner import pipeline
from services.refiner.clients import RefinerPeers
from services.refiner.core import FaceRefiner, Score, SuperResolution, check_identity
from services.refiner.settings import RefinerSettings

log = logging.getLogger("idlock.refiner")


@dataclass(frozen=True)
class StoredAttempt:
    attempt: pipeline.AttemptResult
    image: common_pb2.ImageRef | None


@dataclass(frozen=True)
class Refined:
    attempts: list[StoredAttempt]
    best: common_pb2.ImageRef
    before: Score | None
    after: Score | None
    improved: bool
    encoder: str
    #: the best image's face against the references
    copy: CopyCheck | None = None


class Refiner:
    """What one refiner process holds (face engine, store, upscaler, model threads, peers) and its use case."""

    def __init__(self, settings: RefinerSettings) -> None:
        self.settings = settings
        self.engine: IdentityEngine | None = None
        self.refiner: FaceRefiner | None = None
        self.store: ObjectStore | None = None
        self.upscaler: SuperResolution | None = None
        self.peers: RefinerPeers | None = None
        self._pool = model_executor(settings.workers, "refiner", settings.model_thread_priority)

    # --- lifecycle --------------------------------------------------------------------------------------------

    async def open(self) -> None:
        s = self.settings
        # the face models load before the service reports SERVING
        self.engine = await asyncio.get_running_loop().run_in_executor(self._pool, get_engine, FaceSettings())
        self.refiner = FaceRefiner(
            self.engine,
            margin=s.warp_margin,
            cache_size=s.reference_cache,
            cache_max_age_s=s.reference_cache_max_age_s,
        )
        self.refiner.references.start()
        self.store = await open_store(StorageSettings(), PathsSettings().data_dir)
        if s.sr_model_path:
            self.upscaler = SuperResolution(s.sr_model_path)
            if self.upscaler.unavailable:
                log.warning("%s; Lanczos + sharpening is used", self.upscaler.unavailable)
        self.peers = RefinerPeers(
            MeshSettings(),
            max_message_mb=s.max_message_mb,
            memory_timeout_s=s.memory_timeout_s,
            render_timeout_s=s.render_timeout_s,
        )

    async def close(self) -> None:
        if self.refiner is not None:
            await self.refiner.references.close()
        if self.peers is not None:
            await self.peers.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn, *args, **kw):
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*args, **kw))

    # --- the use case -----------------------------------------------------------------------------------------

    async def _character(
        self, character_id: str, identity: common_pb2.IdentityVector, references: list[common_pb2.ImageRef]
    ) -> tuple[np.ndarray, list[common_pb2.ImageRef]]:
        if character_id:
            ch = await self.peers.character(character_id)
            identity, references = ch.identity, list(ch.reference_images)
            if not identity.values:
                raise PreconditionFailed(f"character {character_id!r} has no identity vector yet")
        elif not identity.values:
            raise InvalidInput("give character_id, or identity with references")
        return check_identity(self.engine, identity.values, identity.encoder), references

    async def refine(
        self,
        image: common_pb2.ImageRef,
        *,
        strategies: list[str],
        character_id: str = "",
        identity: common_pb2.IdentityVector | None = None,
        references: list[common_pb2.ImageRef] | None = None,
        max_attempts: int = 0,
        threshold: float = 0.0,
        job_id: str = "",
        prompt: str = "",
        target_box: tuple[float, float, float, float] | None = None,
    ) -> Refined:
        s = self.settings
        if not image.uri:
            raise InvalidInput("image is missing (image.uri)")
        if max_attempts < 0 or max_attempts > s.max_attempts_limit:
            raise InvalidInput(
                f"max_attempts must be between 1 and {s.max_attempts_limit} (got {max_attempts})"
            )
        if not 0 <= threshold <= 1:
            raise InvalidInput(f"threshold must be a calibrated IDR between 0 and 1 (got {threshold})")
        data = await refs.fetch_ref(self.store, image, "image")
        rgb = await self._run(self.engine.pixels, data, "image")
        vector, ref_images = await self._character(
            character_id, identity or common_pb2.IdentityVector(), list(references or [])
        )
        reference_bytes = [
            await refs.fetch_ref(self.store, r, f"reference image {i}") for i, r in enumerate(ref_images)
        ]
        if not reference_bytes and strategies == ["reference-warp"]:
            raise PreconditionFailed("reference-warp needs the character's reference images; none were given")
        prefix = f"refine/{job_id or uuid.uuid4().hex}"

        async def editor(crop_png: bytes, mask_png: bytes, prompt: str, negative: str) -> bytes:
            size = await self._run(lambda: decode_image(crop_png, name="face crop").pixels.shape[:2])
            crop_ref = await refs.put_image(
                self.store, f"{prefix}/crop.png", crop_png, width=size[1], height=size[0]
            )
            mask_ref = await refs.put_image(
                self.store, f"{prefix}/mask.png", mask_png, width=size[1], height=size[0]
            )
            edited = await self.peers.edit_image(
                render_service_pb2.EditImageRequest(
                    image=crop_ref,
                    mask=mask_ref,
                    references=ref_images,
                    prompt=prompt,
                    negative_prompt=negative,
                    providers=list(s.render_providers),
                    job_id=job_id,
                    output_prefix=f"{prefix}/edit",
                )
            )
            return await refs.fetch_ref(self.store, edited, "edited image")

        outcome = await pipeline.refine(
            self.refiner,
            rgb,
            vector,
            reference_bytes,
            strategies=strategies,
            max_attempts=max_attempts or s.max_attempts,
            threshold=threshold or s.threshold,
            seam_bound=s.seam_bound,
            min_gain=s.min_gain,
            render_margin=s.render_margin,
            render_size=s.render_size,
            editor=editor,
            upscaler=self.upscaler,
            run=self._run,
            prompt=prompt,
            target_box=target_box,
        )
        stored: list[StoredAttempt] = []
        best = image
        for a in outcome.attempts:
            metrics.REFINE_ATTEMPTS.labels(a.strategy, _attempt_outcome(a, outcome.best)).inc()
            ref = None
            if a.image is not None:
                # a refined image is generated too: it says so in its metadata, as the render did
                png = await self._run(
                    lambda im=a.image: mark_image(
                        encode_png(im), job_id=job_id, provider="refiner", label="refined"
                    )
                )
                h, w = a.image.shape[:2]
                ref = await refs.put_image(
                    self.store, f"{prefix}/attempt_{a.index}.png", png, width=w, height=h
                )
                if outcome.best is a:
                    best = ref
            stored.append(StoredAttempt(a, ref))
        return Refined(
            stored,
            best,
            outcome.before,
            outcome.after,
            outcome.improved,
            self.engine.encoder.name,
            outcome.after_copy,
        )


def _attempt_outcome(a: pipeline.AttemptResult, best: pipeline.AttemptResult | None) -> str:
    """What became of one attempt: chosen, copy, rejected (seam or no face), not_better, failed (no image)."""
    if a.image is None:
        return "failed"
    if a is best:
        return "chosen"
    if a.near_copy:
        return "copy"
    return "rejected" if not a.eligible else "not_better"


__all__ = ["Refined", "Refiner", "StoredAttempt"]
