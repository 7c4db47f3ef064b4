"""Training runs (seed 2.3): a run is queued on `idlock.jobs.train`, trained from its dataset (checkpointed, so a
crashed run resumes), stored, validated and decided. Idempotent per run; progress goes out as
`idlock.events.lora.progress`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import shutil
import uuid
from pathlib import Path

from idlock import subjects
from idlock.errors import InvalidInput, NotFound, PreconditionFailed, Unavailable
from idlock.metrics import TRAINING_RUNS
from idlock.v1 import events_pb2
from idlock.v1 import trainer_service_pb2 as pb
from services.trainer import models as m
from services.trainer.datasets import Datasets
from services.trainer.decisions import LoraDecisions
from services.trainer.runtime import TrainerRuntime
from services.trainer.training import LORA_FILE, Progress, TrainConfig, train_lora

log = logging.getLogger("idlock.trainer")

LORA_PROGRESS = subjects.event_subject("lora", "progress")
#: errors that do not get better by retrying: the run fails at once
SETTLED = (InvalidInput, PreconditionFailed, NotFound)


def run_id_for(character_id: str, request_id: str) -> str:
    """The run a request id names: asking again (a retry, a restart, another replica) finds the same run."""
    return "run_" + hashlib.sha256(f"{character_id}|{request_id}".encode()).hexdigest()[:24]


class TrainingRuns:
    def __init__(self, rt: TrainerRuntime, datasets: Datasets, decisions: LoraDecisions) -> None:
        self.rt = rt
        self.datasets = datasets
        self.decisions = decisions

    async def start(
        self,
        character_id: str,
        dataset_uri: str,
        *,
        rank: int = 0,
        steps: int = 0,
        learning_rate: float = 0.0,
        batch_size: int = 0,
        request_id: str = "",
    ) -> m.TrainingRun:
        rt, s = self.rt, self.rt.settings
        if not s.base_model_path or not (Path(s.base_model_path) / "model_index.json").is_file():
            raise PreconditionFailed(
                "no base model to train on: set IDLOCK_TRAINER_BASE_MODEL_PATH to a diffusers pipeline folder",
                details={"reason": "no_base_model"},
            )
        if rt.bus is None:
            raise Unavailable("training jobs need NATS (IDLOCK_NATS_URL), which is unreachable")
        if not dataset_uri:
            ds = await rt.repo.latest_dataset(character_id)
            if ds is None:
                raise PreconditionFailed(
                    f"character {character_id} has no dataset: call BuildDataset first",
                    details={"character_id": character_id, "reason": "no_dataset"},
                )
            dataset_uri = ds.uri
        elif await rt.repo.dataset_by_uri(dataset_uri) is None:
            raise NotFound(f"dataset {dataset_uri} is not one of this trainer's datasets")
        params = {
            "rank": rank or s.rank,
            "steps": steps or s.steps,
            "learning_rate": learning_rate or s.learning_rate,
            "batch_size": batch_size or s.batch_size,
        }
        TrainConfig(**params).validate()
        if len(request_id) > 200:
            raise InvalidInput("request_id is longer than 200 characters")
        run_id = run_id_for(character_id, request_id) if request_id else f"run_{uuid.uuid4().hex[:24]}"
        run, created = await rt.repo.create_run(run_id, character_id, dataset_uri, params)
        if created or run.state == m.RUN_QUEUED:
            work = events_pb2.TrainJobWork(run_id=run.id, character_id=character_id)
            await rt.bus.publish(subjects.JOB_TRAIN, work, msg_id=run.id)
        return run

    async def run(self, run_id: str) -> m.TrainingRun:
        """Train → store → validate → activate or reject. Idempotent per run: a finished run is left alone, a
        crashed one resumes from its last checkpoint."""
        rt, s = self.rt, self.rt.settings
        run = await rt.repo.get_run(run_id)
        if run.state in (m.RUN_SUCCEEDED, m.RUN_FAILED):
            return run
        images, captions, meta = await self.datasets.load(run.dataset_uri)  # rated-up images repeated
        if not images:
            raise PreconditionFailed(f"dataset {run.dataset_uri} kept no images; nothing to train on")
        if not run.lora_id:
            lora = await rt.repo.register_lora(
                run.character_id,
                run_id=run.id,
                dataset_uri=run.dataset_uri,
                training_images=len(meta.get("items", images)),
            )
            await rt.repo.update_run(run.id, lora_id=lora.id)
            run.lora_id = lora.id
        await rt.repo.update_run(run.id, state=m.RUN_RUNNING, error="")
        lora = await rt.repo.get_lora(run.lora_id)
        if lora.file_uri and lora.status != m.TRAINING:
            # trained and stored before a crash: only the decision is left (or was made already)
            if lora.status == m.VALIDATING:
                _, report = await self.decisions.validate_and_decide(lora.id)
                TRAINING_RUNS.labels("approved" if report.approved else "rejected").inc()
            await rt.repo.update_run(run.id, state=m.RUN_SUCCEEDED)
            return await rt.repo.get_run(run.id)
        workdir = rt.run_dir(run.id)
        config = TrainConfig(
            rank=int(run.params["rank"]),
            steps=int(run.params["steps"]),
            learning_rate=float(run.params["learning_rate"]),
            batch_size=int(run.params["batch_size"]),
            checkpoint_every=s.checkpoint_every,
            snapshots=min(s.checkpoint_candidates, int(run.params["steps"])),
            seed=s.seed,
            device=s.device,
        )
        loop = asyncio.get_running_loop()

        def on_progress(p: Progress) -> None:
            if p.step % s.progress_every and p.step != p.total_steps:
                return
            fut = asyncio.run_coroutine_threadsafe(self._progress(run, p), loop)
            fut.add_done_callback(lambda f: f.exception())  # never raise into the training thread

        result = await rt.run(
            train_lora,
            s.base_model_path,
            images,
            captions,
            workdir / "export",
            config,
            checkpoint_dir=workdir / "checkpoints",
            on_progress=on_progress,
        )
        # several checkpoints: the one whose renders keep the identity best is the one stored and decided on
        chosen, report, extra = result.lora_path, None, {}
        if len(result.snapshots) > 1:
            files = {step: str(path) for step, path in result.snapshots.items()}
            step, report, extra = await self.decisions.choose(lora, files)
            chosen = result.snapshots[step]
        data = chosen.read_bytes()
        stored = await rt.store.put(
            f"loras/{run.character_id}/{lora.id}/{LORA_FILE}", data, "application/octet-stream"
        )
        metrics = {
            "train_steps": float(result.steps),
            "train_seconds": result.seconds,
            "train_final_loss": result.losses[-1] if result.losses else 0.0,
            "eval_loss_before": result.eval_loss_before,
            "eval_loss_after": result.eval_loss_after,
            "resumed_from_step": float(result.resumed_from),
            "rank": float(config.rank),
        }
        lora = await rt.repo.update_lora(
            lora.id, file_uri=stored.uri, file_sha256=stored.sha256, status=m.VALIDATING, metrics=metrics
        )
        await rt.repo.update_run(run.id, step=result.steps, loss=metrics["train_final_loss"], eta_s=0.0)
        await rt.lora_event(subjects.LORA_TRAINED, lora, run.id, f"{lora.id}:trained")
        if report is None:
            lora, report = await self.decisions.validate_and_decide(lora.id, local_path=str(chosen))
        else:
            lora = await self.decisions.decide(lora, report, extra)
        await rt.repo.update_run(run.id, state=m.RUN_SUCCEEDED)
        TRAINING_RUNS.labels("approved" if report.approved else "rejected").inc()
        shutil.rmtree(workdir, ignore_errors=True)
        return await rt.repo.get_run(run.id)

    async def fail(self, run_id: str, message: str) -> None:
        """The run failed for good (a settled error, or its last delivery): mark it, reject its LoRA."""
        await self.rt.repo.update_run(run_id, state=m.RUN_FAILED, error=message[:2000])
        TRAINING_RUNS.labels("failed").inc()
        run = await self.rt.repo.get_run(run_id)
        if run.lora_id:
            with contextlib.suppress(NotFound):
                await self.decisions.reject(run.lora_id, run.id)

    async def _progress(self, run: m.TrainingRun, p: Progress) -> None:
        await self.rt.repo.update_run(
            run.id, step=p.step, total_steps=p.total_steps, loss=p.loss, eta_s=p.eta_s
        )
        ev = events_pb2.LoraEvent(
            lora_id=run.lora_id,
            character_id=run.character_id,
            status=pb.LORA_STATUS_TRAINING,
            step=p.step,
            total_steps=p.total_steps,
            loss=p.loss,
            eta_s=p.eta_s,
            run_id=run.id,
        )
        ev.at.GetCurrentTime()
        await self.rt.publish(LORA_PROGRESS, ev, f"{run.id}:progress:{p.step}")


__all__ = [
    "LORA_PROGRESS",
    "SETTLED",
    "TrainingRuns",
    "run_id_for",
]
