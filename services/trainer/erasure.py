"""Erasing a character's training artifacts: datasets, LoRA weights (stored and cached), run work folders and
every row."""

from __future__ import annotations

import logging
import shutil

from services.trainer.runtime import TrainerRuntime
from services.trainer.views import check_character_id

log = logging.getLogger("idlock.trainer")


async def delete_artifacts(rt: TrainerRuntime, character_id: str) -> tuple[int, int]:
    """(objects removed, rows removed)."""
    check_character_id(character_id)
    objects = 0
    for prefix in (f"lora_datasets/{character_id}/", f"loras/{character_id}/"):
        objects += await rt.store.delete_prefix(prefix)
    for row in await rt.repo.list_loras(character_id):
        if row.file_sha256:
            rt.lora_cache_path(row).unlink(missing_ok=True)
    for run_id in await rt.repo.run_ids(character_id):
        shutil.rmtree(rt.run_dir(run_id), ignore_errors=True)
    rows = await rt.repo.delete_character(character_id)
    await rt.repo.db.scrub()
    log.info("character %s: %d objects and %d rows removed", character_id, objects, rows)
    return objects, rows


__all__ = ["delete_artifacts"]
