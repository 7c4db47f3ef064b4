"""Golden collection (seed 2.1): a succeeded job whose calibrated IDR is above the golden threshold, whose face is
not a near-copy of a reference photo (a LoRA trained on copies of the user's photos learns nothing new), and that
its owner did not rate down, becomes a golden candidate; every `auto_train_min_images` of them starts a training run
(seed 2.5; `triggers.py`). Feedback removes (down) or boosts (up) a job's golden image."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable

from google.protobuf import json_format
from PIL import Image

from idlock import subjects
from idlock.errors import InvalidInput
from idlock.v1 import common_pb2, events_pb2
from services.trainer import models as m
from services.trainer.registry import job_of
from services.trainer.runtime import TrainerRuntime
from services.trainer.views import check_character_id

log = logging.getLogger("idlock.trainer")


#: the margin around a face crop, as a share of the face's size on each side
CROP_MARGIN = 0.8


def crop_face(data: bytes, box: common_pb2.BoundingBox) -> tuple[bytes, int, int]:
    """A square crop around the face box (grown by CROP_MARGIN), clipped to the image, as PNG."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        side = max(box.width, box.height) * (1 + 2 * CROP_MARGIN)
        cx, cy = box.x + box.width / 2, box.y + box.height / 2
        left, top = max(0, round(cx - side / 2)), max(0, round(cy - side / 2))
        right, bottom = min(im.width, round(cx + side / 2)), min(im.height, round(cy + side / 2))
        crop = im.crop((left, top, right, bottom))
        buf = io.BytesIO()
        crop.save(buf, "PNG")
        return buf.getvalue(), crop.width, crop.height


def member_event(ev: events_pb2.JobEvent, member: common_pb2.CastResult, k: int) -> events_pb2.JobEvent:
    """One character's view of a succeeded scene of several (its k-th member): its own IDR, copy check, state and
    scene, keyed "<job>/<k>" so each character's golden image and IDR observation is its own."""
    out = events_pb2.JobEvent(
        job_id=f"{ev.job_id}/{k}",
        owner_id=ev.owner_id,
        character_id=member.character_id,
        status=ev.status,
        scene_index=member.scene_index,
    )
    out.at.CopyFrom(ev.at)
    out.result_image.CopyFrom(ev.result_image)
    mm = out.metrics
    if member.HasField("idr_before"):
        mm.idr_before.CopyFrom(member.idr_before)
    if member.HasField("idr_after"):
        mm.idr_after.CopyFrom(member.idr_after)
    mm.refined = member.HasField("idr_after")
    mm.copy.CopyFrom(member.copy)
    mm.tags.CopyFrom(member.tags)
    mm.provider, mm.scene_index = ev.metrics.provider, member.scene_index
    return out


class GoldenCollector:
    def __init__(self, rt: TrainerRuntime, on_collected: Callable[[str], Awaitable[None]]) -> None:
        self.rt = rt
        #: a character got a new golden image (the size trigger counts them)
        self.on_collected = on_collected

    async def collect(
        self, ev: events_pb2.JobEvent, face: common_pb2.BoundingBox | None = None
    ) -> m.GoldenImage | None:
        """Add a succeeded job's image as a golden candidate when its calibrated IDR is above the threshold;
        `face`: a scene of several characters, where only this character's face crop is kept."""
        if not ev.job_id or not ev.character_id or not ev.result_image.uri:
            return None
        metrics = ev.metrics
        refined = metrics.HasField("idr_after") and metrics.idr_after.calibrated
        idr = metrics.idr_after if refined else metrics.idr_before
        if idr.calibrated <= self.rt.settings.golden_threshold:
            return None
        if metrics.copy.near_copy:
            log.info(
                "job %s: not collected: a near-copy of reference %d (similarity %.3f)",
                ev.job_id,
                metrics.copy.reference_index + 1,
                metrics.copy.similarity,
            )
            return None
        try:
            check_character_id(ev.character_id)
        except InvalidInput as e:
            log.warning("job %s: not collected: %s", ev.job_id, e.message)
            return None
        image = ev.result_image
        if face is not None:
            image = await self.face_crop(ev, face)
        job = job_of(ev.job_id)
        row, created = await self.rt.repo.add_golden(
            character_id=ev.character_id,
            owner_id=ev.owner_id,
            job_id=ev.job_id,
            image=json_format.MessageToDict(image),
            # events carry no prompt; the job's episode is memory's newest, so one page finds it
            prompt=(await self.rt.memory.prompts(ev.character_id, {job})).get(job, ""),
            scene_index=int(ev.scene_index or metrics.scene_index),
            idr_raw=float(idr.raw),
            idr_calibrated=float(idr.calibrated),
            encoder=idr.encoder,
            tags=json_format.MessageToDict(metrics.tags),
        )
        if row is None:
            log.info("job %s: rated down by its owner, not collected", ev.job_id)
            return None
        if created:
            out = events_pb2.GoldenCollected(
                character_id=row.character_id, job_id=row.job_id, golden_id=row.id, idr=idr
            )
            out.at.GetCurrentTime()
            await self.rt.publish(subjects.GOLDEN_COLLECTED, out, f"golden:{row.id}")
            character_id = row.character_id
            self.rt.background(lambda: self.on_collected(character_id), name=f"auto-train-{row.id}")
        return row

    async def face_crop(self, ev: events_pb2.JobEvent, box: common_pb2.BoundingBox) -> common_pb2.ImageRef:
        """The character's own face of a scene of several, with a margin of its size around it, stored beside
        the job's image."""
        data = await self.rt.store.get(ev.result_image.uri)
        png, width, height = await asyncio.to_thread(crop_face, data, box)
        key = f"jobs/{job_of(ev.job_id)}/cast/{ev.character_id}.png"
        stored = await self.rt.store.put(key, png, "image/png")
        return common_pb2.ImageRef(
            uri=stored.uri, sha256=stored.sha256, mime="image/png", width=width, height=height
        )

    async def feedback(self, job_id: str, character_id: str, rating: str) -> None:
        if await self.rt.repo.record_feedback(job_id, character_id, rating):
            log.info("job %s rated down: its golden image was removed", job_id)


__all__ = ["GoldenCollector", "crop_face", "member_event"]
