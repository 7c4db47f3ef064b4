"""One character's self-learning from start to rollback, on a running trainer (real nats-server, a tiny diffusers
model): golden scenes trigger a first training, its LoRA is validated and activated; more golden scenes trigger a
second, which beats the first and replaces it; its scenes then score lower than the ones before it, and the watch
rolls it back to the first. The stage the owner sees is read all along, and the decisions say why each step came.
The history is printed (`-s`) as the closing note's example."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from idlock import subjects
from idlock.bus import EventBus
from idlock.images import encode_png
from idlock.settings import NatsSettings, StorageSettings
from idlock.storage import open_store
from idlock.v1 import common_pb2
from idlock.v1 import trainer_service_pb2 as pb
from idlock.v1 import trainer_service_pb2_grpc as pb_grpc
from services.trainer.journal import ACTIVATED, RETRAIN, ROLLED_BACK
from tests.fakes.trainer_data import alternating_scorer, textured
from tests.integration.trainer.running import running_trainer
from tests.integration.trainer.test_trainer_service import _env, _until
from tests.integration.trainer.test_trainer_watch import succeeded


async def test_two_training_cycles_and_a_rollback(nats_server, tiny_model, tmp_path) -> None:
    character = f"c_{uuid.uuid4().hex[:8]}"
    v1, v2 = f"lora_{character}_v1", f"lora_{character}_v2"
    env = {
        **_env(nats_server.url, tiny_model),
        "IDLOCK_TRAINER_AUTO_TRAIN_MIN_IMAGES": "2",
        "IDLOCK_TRAINER_STEPS": "4",
        "IDLOCK_TRAINER_WATCH_WINDOW": "3",
        "IDLOCK_TRAINER_WATCH_MIN_JOBS": "3",
        "IDLOCK_TRAINER_WATCH_MARGIN": "0.05",
    }
    store = await open_store(StorageSettings(), tmp_path)
    async with running_trainer(tmp_path, env, alternating_scorer()) as (_servicer, channel):
        stub = pb_grpc.TrainerServiceStub(channel)
        bus = await EventBus.connect(NatsSettings(url=nats_server.url))
        stages: list[str] = []

        async def report() -> pb.GetLearningReportResponse:
            return await stub.GetLearningReport(pb.GetLearningReportRequest(character_id=character))

        async def watch_stages() -> None:
            while True:
                stage = (await report()).stage
                if not stages or stages[-1] != stage:
                    stages.append(stage)
                await asyncio.sleep(0.02)

        async def scene(idr: float, lora_id: str = "", golden_seed: int = 0) -> None:
            ev = succeeded(character, idr, lora_id)
            if golden_seed:  # a scene good enough to be golden: its image stored as the orchestrator would
                ref = await store.put(
                    f"jobs/{ev.job_id}/image.png", encode_png(textured(golden_seed)), "image/png"
                )
                ev.result_image.CopyFrom(common_pb2.ImageRef(uri=ref.uri, sha256=ref.sha256))
            await bus.publish(subjects.JOB_SUCCEEDED, ev, msg_id=f"{ev.job_id}:succeeded")

        async def active_is(lora_id: str) -> bool:
            got = await stub.GetActiveLora(pb.GetActiveLoraRequest(character_id=character))
            return got.lora.id == lora_id

        watcher = asyncio.create_task(watch_stages())
        try:
            await _until(lambda: asyncio.sleep(0.1, result=bool(stages)), 10)
            # cycle 1: two golden scenes without a LoRA
            for seed in (61, 62):
                await scene(0.9, golden_seed=seed)
            await _until(lambda: active_is(v1), 120)
            for _ in range(3):
                await scene(0.9, v1)
            # cycle 2: two more golden scenes, made with v1
            for seed in (63, 64):
                await scene(0.92, v1, golden_seed=seed)
            await _until(lambda: active_is(v2), 120)
            # v2's scenes hold the identity worse than the ones before it: rolled back to v1
            for _ in range(3):
                await scene(0.6, v2)
            await _until(lambda: active_is(v1), 60)
            await _until(lambda: asyncio.sleep(0.1, result=stages[-1] == "rolled_back"), 10)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await bus.close()

        final = await report()
        loras = (await stub.ListLoras(pb.ListLorasRequest(character_id=character))).loras

    decisions = [(d.decision, d.lora_id) for d in final.decisions]
    assert decisions == [
        (RETRAIN, ""),
        (ACTIVATED, v1),
        (RETRAIN, ""),
        (ACTIVATED, v2),
        (ROLLED_BACK, v2),
    ], [(d.decision, d.reason) for d in final.decisions]
    assert "2 golden images" in final.decisions[0].reason and "4 golden images" in final.decisions[2].reason
    # the stages in the order the owner saw them (a short run may pass between two reads unseen)
    seen = iter(stages)
    assert all(s in seen for s in ("idle", "collecting", "active", "rolled_back")), stages
    assert stages[-1] == "rolled_back" and final.state == ROLLED_BACK
    assert [(x.version, x.training_images) for x in loras] == [(1, 2), (2, 4)]
    assert [x.status for x in loras] == [pb.LORA_STATUS_ACTIVE, pb.LORA_STATUS_ARCHIVED]
    by_lora = {g.key: g.stats for g in final.by_lora}
    assert by_lora[v2].count == 3 and abs(by_lora[v2].mean - 0.6) < 1e-6

    print(f"\nstages seen: {' -> '.join(stages)}")
    for d in final.decisions:
        print(f"  {d.at.ToDatetime():%H:%M:%S.%f} {d.decision:<17} {d.lora_id or '-':<22} {d.reason}")
    for x in loras:
        status = pb.LoraStatus.Name(x.status).removeprefix("LORA_STATUS_").lower()
        print(
            f"  v{x.version}: {x.training_images} images, validated {x.final_idr:.2f} against "
            f"{x.baseline_idr:.2f}, {status}"
        )
