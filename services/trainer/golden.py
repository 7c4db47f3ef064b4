"""Golden collection (seed 2.1): a succeeded job whose calibrated IDR is above the golden threshold, whose face is
not a near-copy of a reference photo (a LoRA trained on copies of the user's photos learns nothing new), and that
its owner did not rate down, becomes a golden candidate; every `auto_train_min_images` of them starts a training run
(seed 2.5; `triggers.py`). Feedback removes (down) or boosts (up) a job's golden image."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from google.protobuf import json_format

from idlock import subjects
from idlock.errors import InvalidInput
from idlock.v1 import events_pb2
from services.trainer import models as m
from services.trainer.runtime import TrainerRuntime
from services.trainer.views import check_character_id

log = logging.getLogger("idlock.trainer")


class GoldenCollector:
    def __init__(self, rt: TrainerRuntime, on_collected: Callable[[str], Awaitable[None]]) -> None:
        self.rt = rt
        #: a character got a new golden image (the size trigger counts them)
        self.on_collected = on_collected

    async def collect(self, ev: events_pb2.JobEvent) -> m.GoldenImage | None:
        """Add a succeeded job's image as a golden candidate when its calibrated IDR is above the threshold."""
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
        row, created = await self.rt.repo.add_golden(
            character_id=ev.character_id,
            owner_id=ev.owner_id,
            job_id=ev.job_id,
            image=json_format.MessageToDict(ev.result_image),
            # events carry no prompt; the job's episode is memory's newest, so one page finds it
            prompt=(await self.rt.memory.prompts(ev.character_id, {ev.job_id})).get(ev.job_id, ""),
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

    async def feedback(self, job_id: str, character_id: str, rating: str) -> None:
        if await self.rt.repo.record_feedback(job_id, character_id, rating):
            log.info("job %s rated down: its golden image was removed", job_id)


__all__ = ["GoldenCollector"]
