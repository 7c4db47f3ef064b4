"""gRPC surface of the trainer (issue #8): golden images → dataset → LoRA → validation → registry.

Consumers (NATS, when reachable):
- `idlock.events.job.succeeded` (durable TRAINER_GOLDEN): an output whose calibrated IDR is above the golden
  threshold and that its owner did not rate down becomes a golden candidate; publishes golden.collected.
- `idlock.events.feedback.recorded`: a down rating removes (or pre-empts) the job's golden image; up boosts it.
- `idlock.events.character.deleted`: erases the character's datasets, LoRA files and rows.
- `idlock.jobs.train` (durable TRAINER_TRAIN, work queue): trains, validates, registers and (when approved)
  activates a LoRA; progress as `idlock.events.lora.progress`.

The core is `dataset.py` (builder), `training.py` (LoRA trainer), `validation.py` (decision) and
`registry.py` (tables).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import shutil
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from idlock import grpc_client, subjects
from idlock.bus import Delivery, EventBus, Worker
from idlock.db import Database
from idlock.errors import IdlockError, InvalidInput, NotFound, PreconditionFailed, Unavailable
from idlock.grpc_server import ServiceSpec
from idlock.settings import DatabaseSettings, MeshSettings, NatsSettings, PathsSettings, StorageSettings
from idlock.storage import ObjectStore, open_store
from idlock.v1 import (
    common_pb2,
    events_pb2,
    memory_service_pb2,
    memory_service_pb2_grpc,
    orchestrator_service_pb2,
)
from idlock.v1 import trainer_service_pb2 as pb
from idlock.v1 import trainer_service_pb2_grpc as pb_grpc
from services.trainer import models as m
from services.trainer.dataset import BuildConfig, Candidate, FaceFinder, build_dataset, identity_face_finder
from services.trainer.registry import DOWN, UP, TrainerRepository
from services.trainer.settings import TrainerSettings
from services.trainer.training import LORA_FILE, Progress, TrainConfig, train_lora
from services.trainer.validation import ScoreFn, diffusers_renderer, identity_scorer, validate

SETTINGS = TrainerSettings
log = logging.getLogger("idlock.trainer")

#: EVENTS consumers besides TRAINER_GOLDEN (idlock.subjects names only that one yet)
TRAINER_FEEDBACK = "trainer-feedback"
TRAINER_CHARACTER_DELETED = "trainer-character-deleted"
LORA_PROGRESS = subjects.event_subject("lora", "progress")
LORA_REJECTED = subjects.LORA_ARCHIVED  # a rejected LoRA is archived (status REJECTED in the event)

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
STATUS = {
    m.TRAINING: pb.LORA_STATUS_TRAINING,
    m.VALIDATING: pb.LORA_STATUS_VALIDATING,
    m.ACTIVE: pb.LORA_STATUS_ACTIVE,
    m.ARCHIVED: pb.LORA_STATUS_ARCHIVED,
    m.REJECTED: pb.LORA_STATUS_REJECTED,
}
RUN_STATE = {
    m.RUN_QUEUED: pb.TRAINING_STATE_QUEUED,
    m.RUN_RUNNING: pb.TRAINING_STATE_RUNNING,
    m.RUN_SUCCEEDED: pb.TRAINING_STATE_SUCCEEDED,
    m.RUN_FAILED: pb.TRAINING_STATE_FAILED,
}

#: (character_id) -> a scorer of rendered images against the character; async because it may ask memory
ScorerFactory = Callable[[str], Any]


def check_character_id(character_id: str) -> str:
    if not character_id:
        raise InvalidInput("character_id is required")
    if not _ID.match(character_id):
        raise InvalidInput(f"character_id {character_id!r} must be letters, digits, '_' or '-' (at most 64)")
    return character_id


def _ts(target, t) -> None:
    t = m.aware(t)
    if t is not None:
        target.FromDatetime(t)


def lora_pb(row: m.LoraModel) -> pb.LoraModel:
    out = pb.LoraModel(
        id=row.id,
        character_id=row.character_id,
        version=row.version,
        file=common_pb2.LoraRef(lora_id=row.id, uri=row.file_uri, sha256=row.file_sha256),
        training_images=row.training_images,
        baseline_idr=row.baseline_idr,
        final_idr=row.final_idr,
        status=STATUS.get(row.status, pb.LORA_STATUS_UNSPECIFIED),
    )
    _ts(out.created_at, row.created_at)
    _ts(out.activated_at, row.activated_at)
    for k, v in (row.metrics or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.metrics[k] = float(v)
    return out


def run_pb(row: m.TrainingRun) -> pb.TrainingRun:
    return pb.TrainingRun(
        id=row.id,
        character_id=row.character_id,
        dataset_uri=row.dataset_uri,
        state=RUN_STATE.get(row.state, pb.TRAINING_STATE_UNSPECIFIED),
        step=row.step,
        total_steps=row.total_steps,
        loss=row.loss,
        eta_s=row.eta_s,
        lora_id=row.lora_id,
        error=row.error,
    )


def golden_pb(row: m.GoldenImage) -> pb.GoldenImage:
    out = pb.GoldenImage(
        id=row.id,
        character_id=row.character_id,
        job_id=row.job_id,
        image=json_format.ParseDict(row.image or {}, common_pb2.ImageRef(), ignore_unknown_fields=True),
        prompt=row.prompt,
        scene_index=row.scene_index,
        idr=common_pb2.IdrScore(raw=row.idr_raw, calibrated=row.idr_calibrated, encoder=row.encoder),
        tags=json_format.ParseDict(row.tags or {}, common_pb2.StateTags(), ignore_unknown_fields=True),
    )
    _ts(out.collected_at, row.collected_at)
    return out


def _tag_list(tags: dict) -> list[str]:
    out: list[str] = []
    for key in ("setting", "clothing", "props", "mood", "injuries"):
        out.extend(str(t) for t in tags.get(key, []) or [])
    return out


class TrainerServicer(pb_grpc.TrainerServiceServicer):
    def __init__(
        self,
        settings: TrainerSettings,
        *,
        face_finder: FaceFinder | None | str = "auto",
        scorer_factory: ScorerFactory | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = PathsSettings().data_dir
        self.db: Database | None = None
        self.repo: TrainerRepository | None = None
        self.store: ObjectStore | None = None
        self.bus: EventBus | None = None
        self.workers: list[Worker] = []
        self._face_finder = face_finder
        self._scorer_factory = scorer_factory
        #: training and validation: one model job at a time
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trainer")
        #: dataset builds and face detection, so they never wait behind a training run
        self._light = ThreadPoolExecutor(max_workers=2, thread_name_prefix="trainer-data")
        self._memory_channel: grpc.aio.Channel | None = None
        self._tasks: set[asyncio.Task] = set()
        self._auto_lock = asyncio.Lock()
        self._auto_started: set[str] = set()

    # --- lifecycle --------------------------------------------------------------------------------------------

    async def startup(self) -> None:
        self.db = Database.open(DatabaseSettings(), service="trainer", data_dir=self.data_dir)
        await self.db.migrate(m.Base.metadata, version=m.SCHEMA_VERSION)
        self.repo = TrainerRepository(self.db)
        self.store = await open_store(StorageSettings(), self.data_dir)
        self.bus = await self._connect_bus()
        if self.bus is not None:
            await self.start_workers()

    async def _connect_bus(self) -> EventBus | None:
        nats = NatsSettings()
        try:
            bus = await asyncio.wait_for(EventBus.connect(nats, name="trainer"), self.settings.nats_wait_s)
            await bus.ensure_streams()
            return bus
        except (TimeoutError, IdlockError, OSError) as e:
            log.warning(
                "NATS at %s unreachable (%s): no golden collection, no training jobs, no events", nats.url, e
            )
            return None

    async def start_workers(self) -> None:
        s = self.settings
        if s.collector_enabled:
            for subject, durable, handler in (
                (subjects.JOB_SUCCEEDED, subjects.TRAINER_GOLDEN, self._on_job_succeeded),
                (subjects.FEEDBACK_RECORDED, TRAINER_FEEDBACK, self._on_feedback),
                (subjects.CHARACTER_DELETED, TRAINER_CHARACTER_DELETED, self._on_character_deleted),
            ):
                self.workers.append(
                    await self.bus.consume(subjects.EVENTS_STREAM, subject, durable, handler, max_deliver=5)
                )
        self.workers.append(
            await self.bus.consume(
                subjects.JOBS_STREAM,
                subjects.JOB_TRAIN,
                subjects.TRAINER_TRAIN,
                self._on_train,
                ack_wait_s=s.ack_wait_s,
                max_deliver=s.max_deliver,
                backoff_s=(5.0, 30.0),
            )
        )

    async def shutdown(self) -> None:
        for w in self.workers:
            with contextlib.suppress(Exception):
                await w.stop(self.settings.grace_s)
        self.workers.clear()
        for t in list(self._tasks):
            t.cancel()
        for close in (
            self.bus.close if self.bus else None,
            self._memory_channel.close if self._memory_channel else None,
            self.store.close if self.store else None,
            self.db.close if self.db else None,
        ):
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.exception("trainer shutdown step failed")
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._light.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn, *args, pool: ThreadPoolExecutor | None = None, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(pool or self._pool, lambda: fn(*args, **kwargs))

    async def _publish(self, subject: str, message, msg_id: str | None = None) -> None:
        if self.bus is None:
            return
        try:
            await self.bus.publish(subject, message, msg_id=msg_id)
        except Exception as e:  # noqa: BLE001 - events are best effort; the rows are the truth
            log.warning("publishing %s failed: %s", subject, e)

    async def _lora_event(self, subject: str, row: m.LoraModel, run_id: str = "", msg_id: str | None = None) -> None:
        ev = events_pb2.LoraEvent(
            lora_id=row.id, character_id=row.character_id, status=STATUS.get(row.status, 0), run_id=run_id
        )
        ev.at.GetCurrentTime()
        await self._publish(subject, ev, msg_id)

    # --- golden collection ------------------------------------------------------------------------------------

    async def collect(self, ev: events_pb2.JobEvent) -> m.GoldenImage | None:
        """Add a succeeded job's image as a golden candidate when its calibrated IDR is above the threshold."""
        if not ev.job_id or not ev.character_id or not ev.result_image.uri:
            return None
        metrics = ev.metrics
        idr = metrics.idr_after if metrics.HasField("idr_after") and metrics.idr_after.calibrated else metrics.idr_before
        if idr.calibrated <= self.settings.golden_threshold:
            return None
        try:
            check_character_id(ev.character_id)
        except InvalidInput as e:
            log.warning("job %s: not collected: %s", ev.job_id, e.message)
            return None
        row, created = await self.repo.add_golden(
            character_id=ev.character_id,
            owner_id=ev.owner_id,
            job_id=ev.job_id,
            image=json_format.MessageToDict(ev.result_image),
            prompt=ev.prompt,
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
            await self._publish(subjects.GOLDEN_COLLECTED, out, f"golden:{row.id}")
            task = asyncio.create_task(self._maybe_auto_train(row.character_id), name=f"auto-train-{row.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return row

    async def _maybe_auto_train(self, character_id: str) -> None:
        """Seed task 2.5: every `auto_train_min_images` golden images of a character, build a dataset and train."""
        n = self.settings.auto_train_min_images
        if not n or not self.settings.base_model_path or self.bus is None:
            return
        async with self._auto_lock:
            try:
                count = await self.repo.count_goldens(character_id)
                request_id = f"auto:{character_id}:{count}"
                if count < n or count % n or request_id in self._auto_started:
                    return
                self._auto_started.add(request_id)
                built = await self.build(character_id, 0)
                if built.kept:
                    run = await self.start_training(character_id, built.uri, request_id=request_id)
                    log.info("auto-training %s at %d golden images: run %s", character_id, count, run.id)
            except IdlockError as e:
                log.warning("auto-training %s not started: %s", character_id, e.message)
            except Exception:
                log.exception("auto-training %s failed to start", character_id)

    async def _on_job_succeeded(self, delivery: Delivery) -> None:
        ev = delivery.message
        if isinstance(ev, events_pb2.JobEvent):
            await self.collect(ev)

    async def _on_feedback(self, delivery: Delivery) -> None:
        ev = delivery.message
        if not isinstance(ev, events_pb2.FeedbackRecorded) or not ev.job_id:
            return
        rating = {orchestrator_service_pb2.FEEDBACK_RATING_DOWN: DOWN, orchestrator_service_pb2.FEEDBACK_RATING_UP: UP}.get(ev.rating)
        if rating is None:
            return
        removed = await self.repo.record_feedback(ev.job_id, ev.character_id, rating)
        if removed:
            log.info("job %s rated down: its golden image was removed", ev.job_id)

    async def _on_character_deleted(self, delivery: Delivery) -> None:
        ev = delivery.message
        if isinstance(ev, events_pb2.CharacterDeleted) and ev.character_id:
            await self.delete_artifacts(ev.character_id)

    # --- datasets ---------------------------------------------------------------------------------------------

    async def _finder(self) -> FaceFinder | None:
        if self._face_finder == "auto":
            if not self.settings.dataset_face_check:
                self._face_finder = None
            else:
                from services.identity.core import get_engine
                from services.identity.settings import IdentitySettings

                engine = await self._run(get_engine, IdentitySettings(), pool=self._light)
                self._face_finder = identity_face_finder(engine)
        return self._face_finder  # type: ignore[return-value]

    async def build(self, character_id: str, resolution: int):
        s = self.settings
        resolution = resolution or s.dataset_resolution
        if not 32 <= resolution <= 2048:
            raise InvalidInput(f"resolution must be between 32 and 2048, got {resolution}")
        goldens = await self.repo.goldens(character_id)
        if not goldens:
            raise PreconditionFailed(
                f"character {character_id} has no golden images yet",
                details={"character_id": character_id, "reason": "no_golden_images"},
            )
        candidates = []
        for g in goldens:
            try:
                data: bytes | None = await self.store.get(g.image.get("uri", ""))
            except (NotFound, InvalidInput):
                data = None
            candidates.append(
                Candidate(
                    golden_id=g.id,
                    image=data,
                    job_id=g.job_id,
                    prompt=g.prompt,
                    scene_index=g.scene_index,
                    idr=g.idr_calibrated,
                    tags=_tag_list(g.tags or {}),
                    boosted=g.boosted,
                )
            )
        version = await self.repo.next_dataset_version(character_id)
        config = BuildConfig(
            resolution=resolution,
            token=s.token,
            min_face_px=s.min_face_px,
            min_blur=s.min_blur,
            dedup_distance=s.dedup_distance,
            face_crops=s.face_crops,
        )
        finder = await self._finder()
        built = await self._run(
            build_dataset, candidates, config, finder, character_id=character_id, version=version, pool=self._light
        )
        prefix = f"lora_datasets/{character_id}/v{version}/"
        uri = ""
        for rel, data in sorted(built.files.items()):
            mime = "application/json" if rel.endswith(".json") else ("text/plain" if rel.endswith(".txt") else "image/png")
            stored = await self.store.put(prefix + rel, data, mime)
            if rel == "metadata.json":
                uri = stored.uri
        await self.repo.add_dataset(
            character_id=character_id,
            version=version,
            uri=uri,
            prefix=prefix,
            resolution=resolution,
            stats=built.metadata["stats"],
        )
        return _Built(uri=uri, version=version, stats=built.metadata["stats"], kept=built.kept)

    async def _load_dataset(self, uri: str) -> tuple[list[bytes], list[str], dict]:
        meta = json.loads(await self.store.get(uri))
        base_key = self.store.key_from_uri(uri).rsplit("/", 1)[0]
        images, captions = [], []
        for item in meta.get("items", []):
            images.append(await self.store.get(f"{base_key}/{item['image']}"))
            captions.append((await self.store.get(f"{base_key}/{item['caption']}")).decode())
        return images, captions, meta

    # --- training ---------------------------------------------------------------------------------------------

    async def start_training(
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
        s = self.settings
        if not s.base_model_path or not (Path(s.base_model_path) / "model_index.json").is_file():
            raise PreconditionFailed(
                "no base model to train on: set IDLOCK_TRAINER_BASE_MODEL_PATH to a diffusers pipeline folder",
                details={"reason": "no_base_model"},
            )
        if self.bus is None:
            raise Unavailable("training jobs need NATS (IDLOCK_NATS_URL), which is unreachable")
        if not dataset_uri:
            ds = await self.repo.latest_dataset(character_id)
            if ds is None:
                raise PreconditionFailed(
                    f"character {character_id} has no dataset: call BuildDataset first",
                    details={"character_id": character_id, "reason": "no_dataset"},
                )
            dataset_uri = ds.uri
        elif await self.repo.dataset_by_uri(dataset_uri) is None:
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
        run_id = (
            "run_" + hashlib.sha256(f"{character_id}|{request_id}".encode()).hexdigest()[:24]
            if request_id
            else f"run_{uuid.uuid4().hex[:24]}"
        )
        run, created = await self.repo.create_run(run_id, character_id, dataset_uri, params)
        if created or run.state == m.RUN_QUEUED:
            work = events_pb2.TrainJobWork(run_id=run.id, character_id=character_id)
            await self.bus.publish(subjects.JOB_TRAIN, work, msg_id=run.id)
        return run

    async def _on_train(self, delivery: Delivery) -> None:
        work = delivery.message
        if not isinstance(work, events_pb2.TrainJobWork) or not work.run_id:
            log.warning("ignoring a %s on %s: not a TrainJobWork", type(work).__name__, delivery.subject)
            return
        final = delivery.num_delivered >= self.settings.max_deliver
        async with delivery.heartbeat():
            try:
                await self.run_training(work.run_id)
            except Exception as e:
                msg = e.message if isinstance(e, IdlockError) else f"{type(e).__name__}: {e}"
                log.warning("training run %s failed (delivery %d): %s", work.run_id, delivery.num_delivered, msg)
                if final or isinstance(e, (InvalidInput, PreconditionFailed, NotFound)):
                    await self.repo.update_run(work.run_id, state=m.RUN_FAILED, error=msg[:2000])
                    run = await self.repo.get_run(work.run_id)
                    if run.lora_id:
                        with contextlib.suppress(NotFound):
                            row = await self.repo.update_lora(run.lora_id, status=m.REJECTED, metrics={"error": 1.0})
                            await self._lora_event(LORA_REJECTED, row, run.id, f"{row.id}:rejected")
                    return  # settled: a bad dataset or config does not get better by retrying
                raise

    async def run_training(self, run_id: str) -> m.TrainingRun:
        """Train → store → validate → activate or reject. Idempotent per run: a finished run is left alone, a
        crashed one resumes from its last checkpoint."""
        s = self.settings
        run = await self.repo.get_run(run_id)
        if run.state in (m.RUN_SUCCEEDED, m.RUN_FAILED):
            return run
        images, captions, _meta = await self._load_dataset(run.dataset_uri)
        if not images:
            raise PreconditionFailed(f"dataset {run.dataset_uri} kept no images; nothing to train on")
        if not run.lora_id:
            lora = await self.repo.register_lora(
                run.character_id, run_id=run.id, dataset_uri=run.dataset_uri, training_images=len(images)
            )
            await self.repo.update_run(run.id, lora_id=lora.id)
            run.lora_id = lora.id
        await self.repo.update_run(run.id, state=m.RUN_RUNNING, error="")
        lora = await self.repo.get_lora(run.lora_id)
        if lora.file_uri and lora.status != m.TRAINING:
            # trained and stored before a crash: only the decision is left (or was made already)
            if lora.status == m.VALIDATING:
                await self.validate_and_decide(lora.id)
            await self.repo.update_run(run.id, state=m.RUN_SUCCEEDED)
            return await self.repo.get_run(run.id)
        workdir = Path(self.data_dir) / "trainer" / "runs" / run.id
        config = TrainConfig(
            rank=int(run.params["rank"]),
            steps=int(run.params["steps"]),
            learning_rate=float(run.params["learning_rate"]),
            batch_size=int(run.params["batch_size"]),
            checkpoint_every=s.checkpoint_every,
            seed=s.seed,
            device=s.device,
        )
        loop = asyncio.get_running_loop()

        def on_progress(p: Progress) -> None:
            if p.step % s.progress_every and p.step != p.total_steps:
                return
            fut = asyncio.run_coroutine_threadsafe(self._progress(run, p), loop)
            fut.add_done_callback(lambda f: f.exception())  # never raise into the training thread

        result = await self._run(
            train_lora,
            s.base_model_path,
            images,
            captions,
            workdir / "export",
            config,
            checkpoint_dir=workdir / "checkpoints",
            on_progress=on_progress,
        )
        data = result.lora_path.read_bytes()
        stored = await self.store.put(
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
        lora = await self.repo.update_lora(
            lora.id, file_uri=stored.uri, file_sha256=stored.sha256, status=m.VALIDATING, metrics=metrics
        )
        await self.repo.update_run(run.id, step=result.steps, loss=metrics["train_final_loss"], eta_s=0.0)
        await self._lora_event(subjects.LORA_TRAINED, lora, run.id, f"{lora.id}:trained")
        lora, _ = await self.validate_and_decide(lora.id, local_path=str(result.lora_path))
        await self.repo.update_run(run.id, state=m.RUN_SUCCEEDED)
        shutil.rmtree(workdir, ignore_errors=True)
        return await self.repo.get_run(run.id)

    async def _progress(self, run: m.TrainingRun, p: Progress) -> None:
        await self.repo.update_run(run.id, step=p.step, total_steps=p.total_steps, loss=p.loss, eta_s=p.eta_s)
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
        await self._publish(LORA_PROGRESS, ev, f"{run.id}:progress:{p.step}")

    # --- validation -------------------------------------------------------------------------------------------

    async def _lora_file(self, row: m.LoraModel) -> str:
        path = Path(self.data_dir) / "trainer" / "cache" / f"{row.file_sha256 or row.id}.safetensors"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(await self.store.get(row.file_uri))
            tmp.replace(path)
        return str(path)

    async def _scorer(self, character_id: str) -> ScoreFn:
        if self._scorer_factory is not None:
            return await self._scorer_factory(character_id)
        from services.identity.core import get_engine
        from services.identity.settings import IdentitySettings

        if self._memory_channel is None:
            self._memory_channel = grpc_client.channel(MeshSettings().memory_addr, default_timeout_s=30)
        stub = memory_service_pb2_grpc.MemoryServiceStub(self._memory_channel)
        try:
            resp = await stub.GetCharacter(memory_service_pb2.GetCharacterRequest(character_id=character_id), timeout=30)
        except grpc.aio.AioRpcError as e:
            raise Unavailable(f"cannot read character {character_id} from memory: {e.details()}") from e
        vector = list(resp.character.identity.values)
        if not vector:
            raise PreconditionFailed(f"character {character_id} has no identity vector to validate against")
        engine = await self._run(get_engine, IdentitySettings())
        return identity_scorer(engine, vector)

    async def validate_and_decide(self, lora_id: str, *, local_path: str | None = None):
        """Render the test scenes with and without the LoRA, compare mean IDRs against the baseline (the active
        LoRA, else none), then activate (approved, when auto_activate) or reject."""
        s = self.settings
        lora = await self.repo.get_lora(lora_id)
        if not lora.file_uri:
            raise PreconditionFailed(f"LoRA {lora_id} has no weights file yet")
        if not s.base_model_path:
            raise PreconditionFailed("validation needs IDLOCK_TRAINER_BASE_MODEL_PATH")
        if lora.status == m.ACTIVE:
            raise PreconditionFailed(
                f"LoRA {lora_id} is the active one; validate a new version against it instead",
                details={"lora_id": lora_id, "status": lora.status},
            )
        if lora.status == m.TRAINING:
            lora = await self.repo.update_lora(lora_id, status=m.VALIDATING)
        active = await self.repo.get_active(lora.character_id)
        baseline_path, baseline_label = None, "no LoRA"
        if active is not None and active.id != lora.id:
            baseline_path, baseline_label = await self._lora_file(active), active.id
        new_path = local_path or await self._lora_file(lora)
        score = await self._scorer(lora.character_id)
        size = s.validation_size or s.dataset_resolution
        render = diffusers_renderer(str(s.base_model_path), steps=s.validation_steps, size=size, device=s.device)
        scenes = [f"a photo of {s.token} person, {p}" for p in s.test_scenes]
        report = await self._run(
            validate,
            render,
            score,
            scenes,
            s.validation_seeds,
            new_path,
            baseline_lora=baseline_path,
            margin=s.validation_margin,
            baseline_label=baseline_label,
        )
        metrics = {**(lora.metrics or {}), **report.metrics(), "approved": float(report.approved)}
        if baseline_path:
            metrics["baseline_is_active_lora"] = 1.0
        if report.approved:
            lora = await self.repo.update_lora(
                lora.id, baseline_idr=report.baseline_idr, final_idr=report.new_idr, metrics=metrics
            )
            if s.auto_activate:
                lora, previous = await self.repo.activate(lora.id)
                await self._lora_event(subjects.LORA_ACTIVATED, lora, lora.run_id, f"{lora.id}:activated:{lora.activated_at}")
                if previous is not None:
                    await self._lora_event(subjects.LORA_ARCHIVED, previous, "", f"{previous.id}:archived:{lora.id}")
        else:
            lora = await self.repo.update_lora(
                lora.id,
                status=m.REJECTED,
                baseline_idr=report.baseline_idr,
                final_idr=report.new_idr,
                metrics=metrics,
            )
            await self._lora_event(LORA_REJECTED, lora, lora.run_id, f"{lora.id}:rejected")
        log.info("LoRA %s %s: %s", lora.id, "approved" if report.approved else "rejected", report.reason)
        return lora, report

    # --- erasure ----------------------------------------------------------------------------------------------

    async def delete_artifacts(self, character_id: str) -> tuple[int, int]:
        check_character_id(character_id)
        objects = 0
        for prefix in (f"lora_datasets/{character_id}/", f"loras/{character_id}/"):
            objects += await self.store.delete_prefix(prefix)
        for row in await self.repo.list_loras(character_id):
            if row.file_sha256:
                (Path(self.data_dir) / "trainer" / "cache" / f"{row.file_sha256}.safetensors").unlink(missing_ok=True)
        for run_id in await self.repo.run_ids(character_id):
            shutil.rmtree(Path(self.data_dir) / "trainer" / "runs" / run_id, ignore_errors=True)
        rows = await self.repo.delete_character(character_id)
        log.info("character %s: %d objects and %d rows removed", character_id, objects, rows)
        return objects, rows

    # --- RPCs -------------------------------------------------------------------------------------------------

    async def ListGoldenImages(self, request: pb.ListGoldenImagesRequest, context) -> pb.ListGoldenImagesResponse:
        check_character_id(request.character_id)
        size = min(max(request.page.page_size or 50, 1), 500)
        rows = await self.repo.goldens(request.character_id, limit=size + 1, after=request.page.page_token)
        token = rows[size - 1].id if len(rows) > size else ""
        return pb.ListGoldenImagesResponse(images=[golden_pb(r) for r in rows[:size]], next_page_token=token)

    async def BuildDataset(self, request: pb.BuildDatasetRequest, context) -> pb.BuildDatasetResponse:
        check_character_id(request.character_id)
        built = await self.build(request.character_id, request.resolution)
        return pb.BuildDatasetResponse(
            dataset_uri=built.uri,
            version=built.version,
            stats=pb.DatasetStats(
                candidates=built.stats["candidates"], kept=built.stats["kept"], dropped=built.stats["dropped"]
            ),
        )

    async def StartTraining(self, request: pb.StartTrainingRequest, context) -> pb.StartTrainingResponse:
        check_character_id(request.character_id)
        run = await self.start_training(
            request.character_id,
            request.dataset_uri,
            rank=request.rank,
            steps=request.steps,
            learning_rate=request.learning_rate,
            batch_size=request.batch_size,
            request_id=request.request_id,
        )
        return pb.StartTrainingResponse(run=run_pb(run))

    async def GetTrainingRun(self, request: pb.GetTrainingRunRequest, context) -> pb.GetTrainingRunResponse:
        if not request.run_id:
            raise InvalidInput("run_id is required")
        return pb.GetTrainingRunResponse(run=run_pb(await self.repo.get_run(request.run_id)))

    async def ValidateLora(self, request: pb.ValidateLoraRequest, context) -> pb.ValidateLoraResponse:
        if not request.lora_id:
            raise InvalidInput("lora_id is required")
        lora, report = await self.validate_and_decide(request.lora_id)
        return pb.ValidateLoraResponse(lora=lora_pb(lora), approved=report.approved, reason=report.reason)

    async def GetActiveLora(self, request: pb.GetActiveLoraRequest, context) -> pb.GetActiveLoraResponse:
        check_character_id(request.character_id)
        row = await self.repo.get_active(request.character_id)
        return pb.GetActiveLoraResponse(lora=lora_pb(row)) if row else pb.GetActiveLoraResponse()

    async def ActivateLora(self, request: pb.ActivateLoraRequest, context) -> pb.ActivateLoraResponse:
        if not request.lora_id:
            raise InvalidInput("lora_id is required")
        row, previous = await self.repo.activate(request.lora_id)
        await self._lora_event(subjects.LORA_ACTIVATED, row, row.run_id, f"{row.id}:activated:{row.activated_at}")
        if previous is not None:
            await self._lora_event(subjects.LORA_ARCHIVED, previous, "", f"{previous.id}:archived:{row.id}:{row.activated_at}")
        return pb.ActivateLoraResponse(lora=lora_pb(row))

    async def ArchiveLora(self, request: pb.ArchiveLoraRequest, context) -> pb.ArchiveLoraResponse:
        if not request.lora_id:
            raise InvalidInput("lora_id is required")
        row = await self.repo.archive(request.lora_id)
        await self._lora_event(subjects.LORA_ARCHIVED, row)
        return pb.ArchiveLoraResponse(lora=lora_pb(row))

    async def RollbackLora(self, request: pb.RollbackLoraRequest, context) -> pb.RollbackLoraResponse:
        check_character_id(request.character_id)
        active, archived = await self.repo.rollback(request.character_id)
        if archived is not None:
            await self._lora_event(subjects.LORA_ARCHIVED, archived)
        if active is None:
            return pb.RollbackLoraResponse()
        await self._lora_event(subjects.LORA_ACTIVATED, active)
        return pb.RollbackLoraResponse(active=lora_pb(active))

    async def ListLoras(self, request: pb.ListLorasRequest, context) -> pb.ListLorasResponse:
        check_character_id(request.character_id)
        return pb.ListLorasResponse(loras=[lora_pb(r) for r in await self.repo.list_loras(request.character_id)])

    async def DeleteCharacterArtifacts(
        self, request: pb.DeleteCharacterArtifactsRequest, context
    ) -> pb.DeleteCharacterArtifactsResponse:
        objects, rows = await self.delete_artifacts(request.character_id)
        return pb.DeleteCharacterArtifactsResponse(objects_removed=objects, rows_removed=rows)


class _Built:
    def __init__(self, *, uri: str, version: int, stats: dict, kept: int) -> None:
        self.uri, self.version, self.stats, self.kept = uri, version, stats, kept


def spec_for(servicer: TrainerServicer) -> ServiceSpec:
    return ServiceSpec(
        component="trainer",
        service_names=[pb.DESCRIPTOR.services_by_name["TrainerService"].full_name],
        registrations=[lambda server: pb_grpc.add_TrainerServiceServicer_to_server(servicer, server)],
        on_startup=[servicer.startup],
        on_shutdown=[servicer.shutdown],
    )


def build(settings: TrainerSettings) -> ServiceSpec:
    return spec_for(TrainerServicer(settings))
