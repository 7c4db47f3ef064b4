"""A trained LoRA's fate: validation against the baseline (the active LoRA, else none) on held-out test scenes,
then activation or rejection (seed 2.4), and the registry's manual moves (activate, archive, roll back), each
announced as a `lora.*` event."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from idlock import subjects
from idlock.errors import PreconditionFailed
from idlock.files import replace_whole
from idlock.metrics import LORA_ACTIVATIONS, LORA_ROLLBACKS
from services.trainer import models as m
from services.trainer.journal import ACTIVATED, REJECTED, ROLLED_BACK, record_decision
from services.trainer.runtime import TrainerRuntime
from services.trainer.validation import (
    ScoreFn,
    ValidationReport,
    diffusers_renderer,
    identity_scorer,
    validate,
)

log = logging.getLogger("idlock.trainer")

#: a rejected LoRA is archived (status REJECTED in the event)
LORA_REJECTED = subjects.LORA_ARCHIVED

#: (character_id) -> a scorer of rendered images against the character
ScorerFactory = Callable[[str], Awaitable[ScoreFn]]


class LoraDecisions:
    def __init__(self, rt: TrainerRuntime, scorer_factory: ScorerFactory | None = None) -> None:
        self.rt = rt
        self._scorer_factory = scorer_factory

    async def _lora_file(self, row: m.LoraModel) -> str:
        path = self.rt.lora_cache_path(row)
        if not path.exists():  # two validations may fetch it at once: each writes a whole copy, off the loop
            data = await self.rt.store.get(row.file_uri)
            await asyncio.to_thread(replace_whole, path, data, durable=False)
        return str(path)

    async def _scorer(self, character_id: str) -> ScoreFn:
        if self._scorer_factory is not None:
            return await self._scorer_factory(character_id)
        from idlock.faces.engine import get_engine  # loads the face models: only when asked

        vector = list((await self.rt.memory.identity(character_id)).values)
        if not vector:
            raise PreconditionFailed(f"character {character_id} has no identity vector to validate against")
        engine = await self.rt.run(get_engine, self.rt.faces)
        return identity_scorer(engine, vector)

    async def validate_and_decide(
        self, lora_id: str, *, local_path: str | None = None
    ) -> tuple[m.LoraModel, ValidationReport]:
        """Render the test scenes with and without the LoRA, compare mean IDRs against the baseline (the active
        LoRA, else none), then activate (approved, when auto_activate) or reject."""
        lora = await self.rt.repo.get_lora(lora_id)
        if not lora.file_uri:
            raise PreconditionFailed(f"LoRA {lora_id} has no weights file yet")
        if lora.status == m.ACTIVE:
            raise PreconditionFailed(
                f"LoRA {lora_id} is the active one; validate a new version against it instead",
                details={"lora_id": lora_id, "status": lora.status},
            )
        if lora.status == m.TRAINING:
            lora = await self.rt.repo.update_lora(lora_id, status=m.VALIDATING)
        report = await self.validation(lora, local_path or await self._lora_file(lora))
        return await self.decide(lora, report), report

    async def choose(
        self, lora: m.LoraModel, candidates: dict[int, str]
    ) -> tuple[int, ValidationReport, dict[str, float]]:
        """Validate each checkpoint (training step -> weights file) and pick the best identity; on a tie the later
        step. Returns (step, its report, metrics naming the choice and every step's IDR)."""
        reports = {step: await self.validation(lora, path) for step, path in sorted(candidates.items())}
        step = max(reports, key=lambda k: (round(reports[k].new_idr, 6), k))
        extra = {"selected_step": float(step)}
        extra.update({f"validation_idr_step_{k}": r.new_idr for k, r in reports.items()})
        log.info(
            "LoRA %s: step %d chosen of %s",
            lora.id,
            step,
            {k: round(r.new_idr, 4) for k, r in reports.items()},
        )
        return step, reports[step], extra

    async def validation(self, lora: m.LoraModel, path: str) -> ValidationReport:
        """The test scenes rendered with the weights at `path` and with the baseline (the active LoRA, else none)."""
        rt, s = self.rt, self.rt.settings
        if not s.base_model_path:
            raise PreconditionFailed("validation needs IDLOCK_TRAINER_BASE_MODEL_PATH")
        active = await rt.repo.get_active(lora.character_id)
        baseline_path, baseline_label = None, "no LoRA"
        if active is not None and active.id != lora.id:
            baseline_path, baseline_label = await self._lora_file(active), active.id
        score = await self._scorer(lora.character_id)
        size = s.validation_size or s.dataset_resolution
        render = diffusers_renderer(
            str(s.base_model_path), steps=s.validation_steps, size=size, device=s.device
        )
        scenes = [f"a photo of {s.token} person, {p}" for p in s.test_scenes]
        return await rt.run(
            validate,
            render,
            score,
            scenes,
            s.validation_seeds,
            path,
            baseline_lora=baseline_path,
            margin=s.validation_margin,
            baseline_label=baseline_label,
        )

    async def decide(
        self, lora: m.LoraModel, report: ValidationReport, extra: dict[str, float] | None = None
    ) -> m.LoraModel:
        """Approve (and activate, when auto_activate) or reject, as the validation report says."""
        rt, s = self.rt, self.rt.settings
        metrics = {
            **(lora.metrics or {}),
            **report.metrics(),
            "approved": float(report.approved),
            **(extra or {}),
        }
        if report.baseline_label != "no LoRA":
            metrics["baseline_is_active_lora"] = 1.0
        chosen = (extra or {}).get("selected_step")
        why = report.reason + (f" (the checkpoint of step {int(chosen)}, the best)" if chosen else "")
        if report.approved:
            lora = await rt.repo.update_lora(
                lora.id, baseline_idr=report.baseline_idr, final_idr=report.new_idr, metrics=metrics
            )
            if s.auto_activate:
                lora, previous = await rt.repo.activate(lora.id)
                await self._announce_activation(lora, previous, lora.run_id)
                LORA_ACTIVATIONS.labels("validated").inc()
                await record_decision(rt, lora.character_id, ACTIVATED, f"{lora.id}: {why}", lora.id)
        else:
            lora = await rt.repo.update_lora(
                lora.id,
                status=m.REJECTED,
                baseline_idr=report.baseline_idr,
                final_idr=report.new_idr,
                metrics=metrics,
            )
            await rt.lora_event(LORA_REJECTED, lora, lora.run_id, f"{lora.id}:rejected")
            await record_decision(rt, lora.character_id, REJECTED, f"{lora.id}: {why}", lora.id)
        log.info("LoRA %s %s: %s", lora.id, "approved" if report.approved else "rejected", why)
        return lora

    async def _announce_activation(
        self, row: m.LoraModel, previous: m.LoraModel | None, run_id: str, *, archived_suffix: str = ""
    ) -> None:
        await self.rt.lora_event(
            subjects.LORA_ACTIVATED, row, run_id, f"{row.id}:activated:{row.activated_at}"
        )
        if previous is not None:
            await self.rt.lora_event(
                subjects.LORA_ARCHIVED, previous, "", f"{previous.id}:archived:{row.id}{archived_suffix}"
            )

    async def reject(self, lora_id: str, run_id: str) -> None:
        """A run that failed for good: its LoRA (if it got one) is rejected."""
        row = await self.rt.repo.update_lora(lora_id, status=m.REJECTED, metrics={"error": 1.0})
        await self.rt.lora_event(LORA_REJECTED, row, run_id, f"{row.id}:rejected")
        await record_decision(
            self.rt, row.character_id, REJECTED, f"{row.id}: its training run {run_id} failed", row.id
        )

    # --- the registry's manual moves --------------------------------------------------------------------------

    async def activate(self, lora_id: str) -> m.LoraModel:
        row, previous = await self.rt.repo.activate(lora_id)
        await self._announce_activation(row, previous, row.run_id, archived_suffix=f":{row.activated_at}")
        LORA_ACTIVATIONS.labels("manual").inc()
        await record_decision(self.rt, row.character_id, ACTIVATED, f"{row.id}: activated by request", row.id)
        return row

    async def archive(self, lora_id: str) -> m.LoraModel:
        row = await self.rt.repo.archive(lora_id)
        await self.rt.lora_event(subjects.LORA_ARCHIVED, row)
        return row

    async def rollback(self, character_id: str, reason: str = "rolled back by request") -> m.LoraModel | None:
        """Archive the active LoRA, re-activate the one before it (if any); `reason` is kept as a decision (empty:
        the caller keeps its own)."""
        active, archived = await self.rt.repo.rollback(character_id)
        if archived is not None:
            LORA_ROLLBACKS.inc()
            if reason:
                await record_decision(
                    self.rt, character_id, ROLLED_BACK, f"{archived.id}: {reason}", archived.id
                )
        if archived is not None:
            await self.rt.lora_event(subjects.LORA_ARCHIVED, archived)
        if active is not None:
            await self.rt.lora_event(subjects.LORA_ACTIVATED, active)
        return active


__all__ = ["LORA_REJECTED", "LoraDecisions", "ScorerFactory"]
