"""The trainer service over gRPC with a real nats-server: job.succeeded events → golden images (threshold,
feedback) → BuildDataset → StartTraining (jobs.train) → validation → the active LoRA → erasure."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from idlock import subjects
from idlock.bus import EventBus
from idlock.images import encode_png
from idlock.settings import NatsSettings, StorageSettings
from idlock.storage import open_store
from idlock.v1 import common_pb2, events_pb2, orchestrator_service_pb2
from idlock.v1 import trainer_service_pb2 as pb
from idlock.v1 import trainer_service_pb2_grpc as pb_grpc
from tests.fakes.trainer_data import alternating_scorer, near_duplicate, textured
from tests.harness import stream_events
from tests.integration.trainer.running import running_trainer
from tests.metrics_probe import Change


def _env(nats_url: str, model) -> dict[str, str]:
    return {
        "IDLOCK_NATS_URL": nats_url,
        "IDLOCK_TRAINER_BASE_MODEL_PATH": str(model),
        "IDLOCK_TRAINER_DEVICE": "cpu",
        "IDLOCK_TRAINER_RANK": "4",
        "IDLOCK_TRAINER_STEPS": "6",
        "IDLOCK_TRAINER_BATCH_SIZE": "2",
        "IDLOCK_TRAINER_CHECKPOINT_EVERY": "3",
        "IDLOCK_TRAINER_PROGRESS_EVERY": "2",
        "IDLOCK_TRAINER_DATASET_RESOLUTION": "32",
        "IDLOCK_TRAINER_VALIDATION_SIZE": "32",
        "IDLOCK_TRAINER_VALIDATION_STEPS": "2",
        "IDLOCK_TRAINER_VALIDATION_SEEDS": "[1]",
        "IDLOCK_TRAINER_TEST_SCENES": '["portrait"]',
        "IDLOCK_TRAINER_AUTO_TRAIN_MIN_IMAGES": "0",
        "IDLOCK_TRAINER_MIN_BLUR": "5",
    }


async def _events(nats_url: str, subject: str, character_id: str, want: int) -> list:
    return await stream_events(nats_url, subject, want=want, match=lambda e: e.character_id == character_id)


async def _until(fn, timeout_s: float = 60.0, every: float = 0.2):
    async with asyncio.timeout(timeout_s):
        while True:
            value = await fn()
            if value:
                return value
            await asyncio.sleep(every)


async def test_golden_images_to_an_active_lora_and_erasure(nats_server, tiny_model, tmp_path) -> None:
    character = f"c_{uuid.uuid4().hex[:8]}"
    store = await open_store(StorageSettings(), tmp_path)
    pics = {"a": textured(1), "b": textured(2), "low": textured(3), "down": textured(4)}
    pics["twin"] = near_duplicate(pics["a"])
    pics["copy"] = textured(5)  # scores best of all, but is a near-copy of a reference: never golden
    idrs = {"a": 0.9, "b": 0.95, "low": 0.6, "down": 0.92, "twin": 0.88, "copy": 0.98}
    env = _env(nats_server.url, tiny_model)
    grew = Change()  # the training run, its activation and the rollback, as the trainer's metrics say
    async with running_trainer(tmp_path, env, alternating_scorer()) as (_servicer, channel):
        stub = pb_grpc.TrainerServiceStub(channel)
        bus = await EventBus.connect(NatsSettings(url=nats_server.url))
        try:
            for name, arr in pics.items():
                job = f"{character}-{name}"
                ref = await store.put(f"jobs/{job}/image.png", encode_png(arr), "image/png")
                ev = events_pb2.JobEvent(
                    job_id=job,
                    owner_id="o1",
                    character_id=character,
                    status=common_pb2.JOB_STATUS_SUCCEEDED,
                    scene_index=3,
                    result_image=common_pb2.ImageRef(uri=ref.uri, sha256=ref.sha256, width=64, height=64),
                )
                ev.metrics.idr_before.CopyFrom(
                    common_pb2.IdrScore(raw=0.5, calibrated=idrs[name], encoder="dlib")
                )
                ev.metrics.tags.setting.append("forest camp")
                ev.metrics.copy.CopyFrom(
                    common_pb2.CopyCheck(
                        checked=True, similarity=0.97 if name == "copy" else 0.4, near_copy=name == "copy"
                    )
                )
                await bus.publish(subjects.JOB_SUCCEEDED, ev, msg_id=f"{job}:succeeded")
            down = orchestrator_service_pb2.FEEDBACK_RATING_DOWN
            await bus.publish(
                subjects.FEEDBACK_RECORDED,
                events_pb2.FeedbackRecorded(job_id=f"{character}-down", character_id=character, rating=down),
            )

            async def goldens():
                resp = await stub.ListGoldenImages(pb.ListGoldenImagesRequest(character_id=character))
                jobs = {g.job_id.removeprefix(f"{character}-") for g in resp.images}
                return resp if jobs == {"a", "b", "twin"} else None

            listed = await _until(goldens, 30)
            first = next(g for g in listed.images if g.job_id.endswith("-b"))
            # events carry no prompt, and no memory runs here to ask for it
            assert (
                first.prompt == "" and first.scene_index == 3 and first.idr.calibrated == pytest.approx(0.95)
            )
            assert list(first.tags.setting) == ["forest camp"]
            collected = await _events(nats_server.url, subjects.GOLDEN_COLLECTED, character, want=3)
            assert (
                len(collected) >= 3
            )  # 'down' may have been collected before its rating arrived, then removed

            built = await stub.BuildDataset(pb.BuildDatasetRequest(character_id=character, resolution=32))
            assert built.version == 1 and built.dataset_uri.endswith(
                f"lora_datasets/{character}/v1/metadata.json"
            )
            assert (built.stats.candidates, built.stats.kept, dict(built.stats.dropped)) == (
                3,
                2,
                {"duplicate": 1},
            )
            keys = await store.list(f"lora_datasets/{character}/v1/")
            assert sum(k.endswith(".png") for k in keys) == 2 and sum(k.endswith(".txt") for k in keys) == 2

            started = await stub.StartTraining(
                pb.StartTrainingRequest(character_id=character, request_id="r1")
            )
            again = await stub.StartTraining(pb.StartTrainingRequest(character_id=character, request_id="r1"))
            assert started.run.id == again.run.id and started.run.total_steps == 6

            async def finished():
                run = (await stub.GetTrainingRun(pb.GetTrainingRunRequest(run_id=started.run.id))).run
                return run if run.state in (pb.TRAINING_STATE_SUCCEEDED, pb.TRAINING_STATE_FAILED) else None

            run = await _until(finished, 120)
            assert run.state == pb.TRAINING_STATE_SUCCEEDED, run.error
            assert run.step == 6 and run.lora_id == f"lora_{character}_v1"

            active = (await stub.GetActiveLora(pb.GetActiveLoraRequest(character_id=character))).lora
            assert active.id == run.lora_id and active.status == pb.LORA_STATUS_ACTIVE and active.version == 1
            assert active.final_idr == pytest.approx(0.9) and active.baseline_idr == pytest.approx(0.5)
            assert active.metrics["approved"] == 1.0 and active.training_images == 2
            assert active.file.uri.endswith("pytorch_lora_weights.safetensors") and await store.exists(
                active.file.uri
            )
            progress = await _events(nats_server.url, "idlock.events.lora.progress", character, want=3)
            assert [p.step for p in progress][:3] == [2, 4, 6]

            history = (await stub.ListLoras(pb.ListLorasRequest(character_id=character))).loras
            assert [h.id for h in history] == [run.lora_id]

            await stub.RollbackLora(pb.RollbackLoraRequest(character_id=character))
            assert grew("idlock_training_runs_total", outcome="approved") == 1
            assert grew("idlock_lora_activations_total", how="validated") == 1
            assert grew("idlock_lora_rollbacks_total") == 1

            erased = await stub.DeleteCharacterArtifacts(
                pb.DeleteCharacterArtifactsRequest(character_id=character)
            )
            assert erased.objects_removed >= 6 and erased.rows_removed >= 5
            assert not await store.list(f"lora_datasets/{character}/") and not await store.list(
                f"loras/{character}/"
            )
            assert not (await stub.GetActiveLora(pb.GetActiveLoraRequest(character_id=character))).HasField(
                "lora"
            )
            assert not (await stub.ListLoras(pb.ListLorasRequest(character_id=character))).loras
        finally:
            await bus.close()


async def test_bad_requests_get_clear_codes(tmp_path) -> None:
    import grpc

    from tests.harness import running_service

    env = {"IDLOCK_NATS_URL": "nats://127.0.0.1:1", "IDLOCK_TRAINER_NATS_WAIT_S": "0.5"}
    async with running_service("trainer", tmp_path, **env) as channel:
        stub = pb_grpc.TrainerServiceStub(channel)
        cases = [
            (stub.GetActiveLora(pb.GetActiveLoraRequest()), grpc.StatusCode.INVALID_ARGUMENT),
            (
                stub.GetActiveLora(pb.GetActiveLoraRequest(character_id="../x")),
                grpc.StatusCode.INVALID_ARGUMENT,
            ),
            (
                stub.BuildDataset(pb.BuildDatasetRequest(character_id="c1")),
                grpc.StatusCode.FAILED_PRECONDITION,
            ),
            (
                stub.StartTraining(pb.StartTrainingRequest(character_id="c1")),
                grpc.StatusCode.FAILED_PRECONDITION,
            ),
            (stub.ActivateLora(pb.ActivateLoraRequest(lora_id="lora_c1_v9")), grpc.StatusCode.NOT_FOUND),
            (
                stub.RollbackLora(pb.RollbackLoraRequest(character_id="c1")),
                grpc.StatusCode.FAILED_PRECONDITION,
            ),
            (stub.GetTrainingRun(pb.GetTrainingRunRequest(run_id="run_x")), grpc.StatusCode.NOT_FOUND),
        ]
        for call, code in cases:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == code, err.value.details()
        empty = await stub.GetActiveLora(pb.GetActiveLoraRequest(character_id="c1"))
        assert not empty.HasField("lora")


async def test_enough_golden_images_trigger_training_and_auto_activation(
    nats_server, tiny_model, tmp_path
) -> None:
    character = f"c_{uuid.uuid4().hex[:8]}"
    store = await open_store(StorageSettings(), tmp_path)
    env = {
        **_env(nats_server.url, tiny_model),
        "IDLOCK_TRAINER_AUTO_TRAIN_MIN_IMAGES": "2",
        "IDLOCK_TRAINER_STEPS": "2",
    }
    async with running_trainer(tmp_path, env, alternating_scorer()) as (_servicer, channel):
        stub = pb_grpc.TrainerServiceStub(channel)
        bus = await EventBus.connect(NatsSettings(url=nats_server.url))
        try:
            for i in range(2):
                job = f"{character}-{i}"
                ref = await store.put(f"jobs/{job}/image.png", encode_png(textured(20 + i)), "image/png")
                ev = events_pb2.JobEvent(
                    job_id=job,
                    character_id=character,
                    status=common_pb2.JOB_STATUS_SUCCEEDED,
                    result_image=common_pb2.ImageRef(uri=ref.uri, sha256=ref.sha256),
                )
                ev.metrics.idr_before.CopyFrom(common_pb2.IdrScore(calibrated=0.9))
                await bus.publish(subjects.JOB_SUCCEEDED, ev, msg_id=f"{job}:succeeded")

            async def active():
                resp = await stub.GetActiveLora(pb.GetActiveLoraRequest(character_id=character))
                return resp.lora if resp.HasField("lora") else None

            lora = await _until(active, 120)
            assert lora.id == f"lora_{character}_v1" and lora.training_images == 2
            activated = await _events(nats_server.url, subjects.LORA_ACTIVATED, character, want=1)
            assert activated and activated[0].lora_id == lora.id
        finally:
            await bus.close()
