"""A trainer killed (SIGKILL, as a crash or an evicted pod) in the middle of a training run, then started again: the
run is neither lost nor started twice. The new process takes the run's redelivered work, resumes from the last
checkpoint, and finishes it. Asking for the run again names the same run, and there is one LoRA and one `trained`
event. The trainer is its own process (`tests.fakes.trainer_process`) with a real nats-server, its SQLite file, and
the local object store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from idlock import grpc_client, subjects
from idlock.bus import EventBus
from idlock.images import encode_png
from idlock.natsd import free_port
from idlock.settings import NatsSettings, StorageSettings
from idlock.storage import open_store
from idlock.v1 import common_pb2, events_pb2
from idlock.v1 import trainer_service_pb2 as pb
from idlock.v1 import trainer_service_pb2_grpc as pb_grpc
from services.trainer.runs import LORA_PROGRESS
from tests.fakes.trainer_data import textured
from tests.harness import stream_events
from tests.integration.trainer.test_trainer_service import _env

STEPS, CHECKPOINT_EVERY = 160, 20
ROOT = Path(__file__).resolve().parents[3]


class TrainerProcess:
    """`python -m tests.fakes.trainer_process` on one port and data folder, started and killed at will."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            **env,
            "IDLOCK_DATA_DIR": str(data_dir),
            "IDLOCK_TRAINER_PORT": str(self.port),
            "IDLOCK_METRICS_PORT": "-1",
        }
        self.log = data_dir / "trainer.log"
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.fakes.trainer_process"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    async def serving(self, stub: pb_grpc.TrainerServiceStub, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-4000:]
            try:
                await stub.ListLoras(pb.ListLorasRequest(character_id="c_probe"), timeout=2)
                return
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise


@pytest.fixture
def trainer_env(nats_server, tiny_model) -> dict[str, str]:
    return {
        **_env(nats_server.url, tiny_model),
        "IDLOCK_TRAINER_STEPS": str(STEPS),
        "IDLOCK_TRAINER_CHECKPOINT_EVERY": str(CHECKPOINT_EVERY),
        "IDLOCK_TRAINER_PROGRESS_EVERY": "1",
        "IDLOCK_TRAINER_CHECKPOINT_CANDIDATES": "1",
        # the killed process's delivery comes back this soon after its last heartbeat
        "IDLOCK_TRAINER_ACK_WAIT_S": "3",
        "IDLOCK_LOG_JSON": "false",
    }


@pytest.fixture
def trainer(trainer_env, tmp_path) -> Iterator[TrainerProcess]:
    proc = TrainerProcess(trainer_env, tmp_path)
    yield proc
    proc.stop()


async def _dataset(nats_url: str, tmp_path: Path, stub, character: str) -> None:
    """Two golden images, by the events a running mesh would publish, then a dataset built from them."""
    store = await open_store(StorageSettings(), tmp_path)
    bus = await EventBus.connect(NatsSettings(url=nats_url))
    try:
        for seed in (41, 42):
            job = f"{character}-{seed}"
            ref = await store.put(f"jobs/{job}/image.png", encode_png(textured(seed)), "image/png")
            ev = events_pb2.JobEvent(
                job_id=job,
                owner_id="o1",
                character_id=character,
                status=common_pb2.JOB_STATUS_SUCCEEDED,
                scene_index=seed,
                result_image=common_pb2.ImageRef(uri=ref.uri, sha256=ref.sha256, width=64, height=64),
            )
            ev.metrics.idr_before.CopyFrom(common_pb2.IdrScore(raw=0.5, calibrated=0.9, encoder="dlib"))
            await bus.publish(subjects.JOB_SUCCEEDED, ev, msg_id=f"{job}:succeeded")
    finally:
        await bus.close()
    async with asyncio.timeout(30):
        while (
            len((await stub.ListGoldenImages(pb.ListGoldenImagesRequest(character_id=character))).images) < 2
        ):
            await asyncio.sleep(0.2)
    built = await stub.BuildDataset(pb.BuildDatasetRequest(character_id=character, resolution=32))
    assert built.stats.kept == 2


async def _run(stub, run_id: str) -> pb.TrainingRun:
    return (await stub.GetTrainingRun(pb.GetTrainingRunRequest(run_id=run_id))).run


async def test_a_trainer_killed_mid_run_resumes_it_once(
    nats_server, trainer: TrainerProcess, tmp_path
) -> None:
    character = f"c_{uuid.uuid4().hex[:8]}"
    trainer.start()
    async with grpc_client.channel(trainer.address, default_timeout_s=30) as channel:
        stub = pb_grpc.TrainerServiceStub(channel)
        await trainer.serving(stub)
        await _dataset(nats_server.url, tmp_path, stub, character)
        started = (
            await stub.StartTraining(pb.StartTrainingRequest(character_id=character, request_id="restart-1"))
        ).run

        # killed after its first checkpoint, well before the end
        async with asyncio.timeout(120):
            while (await _run(stub, started.id)).step < CHECKPOINT_EVERY + 3:
                await asyncio.sleep(0.02)
        trainer.kill()
        trainer.start()
        await trainer.serving(stub)
        at_kill = await _run(stub, started.id)
        assert at_kill.state == pb.TRAINING_STATE_RUNNING and CHECKPOINT_EVERY < at_kill.step < STEPS, at_kill

        # asking again (a client's retry, a trigger firing again after the restart) names the same run
        again = (
            await stub.StartTraining(pb.StartTrainingRequest(character_id=character, request_id="restart-1"))
        ).run
        assert again.id == started.id

        async with asyncio.timeout(180):
            while (run := await _run(stub, started.id)).state not in (
                pb.TRAINING_STATE_SUCCEEDED,
                pb.TRAINING_STATE_FAILED,
            ):
                await asyncio.sleep(0.2)
        assert run.state == pb.TRAINING_STATE_SUCCEEDED, run.error
        assert run.step == STEPS

        (lora,) = (await stub.ListLoras(pb.ListLorasRequest(character_id=character))).loras
        assert lora.id == run.lora_id and lora.status == pb.LORA_STATUS_ACTIVE
        # resumed from the checkpoint it had when killed, not from step 0
        resumed = int(lora.metrics["resumed_from_step"])
        assert resumed >= CHECKPOINT_EVERY and resumed % CHECKPOINT_EVERY == 0 and resumed <= at_kill.step
        print(f"trainer killed at step {at_kill.step} of {STEPS}; the new process resumed from {resumed}")

    progress = await stream_events(
        nats_server.url, LORA_PROGRESS, want=10_000, match=lambda e: e.run_id == started.id, timeout_s=3
    )
    steps = [p.step for p in progress]
    # every step reported, each once (a step trained again after the resume is the same event, deduplicated)
    assert sorted(steps) == list(range(1, STEPS + 1)), steps
    trained = await stream_events(
        nats_server.url, subjects.LORA_TRAINED, want=10, match=lambda e: e.run_id == started.id, timeout_s=3
    )
    assert len(trained) == 1
