"""When a character trains again, on a running trainer (real nats-server, a tiny diffusers model): the time trigger
is due only after its interval and only with golden images newer than the last run, and asking twice starts one
run; a degraded character gets a run of its own; each start is a decision with its reason."""

from __future__ import annotations

import uuid
from datetime import timedelta

from idlock.images import encode_png
from idlock.v1 import common_pb2, events_pb2
from services.trainer import models as tm
from services.trainer.runs import run_id_for
from services.trainer.server import TrainerServicer
from services.trainer.triggers import RETRAIN
from services.trainer.watch import DEGRADED
from tests.fakes.trainer_data import alternating_scorer, textured
from tests.integration.trainer.running import running_trainer
from tests.integration.trainer.test_trainer_service import _env


async def _golden(servicer: TrainerServicer, character_id: str, seed: int) -> None:
    job = f"job_{uuid.uuid4().hex[:10]}"
    stored = await servicer.rt.store.put(f"jobs/{job}/image.png", encode_png(textured(seed)), "image/png")
    row, created = await servicer.repo.add_golden(
        character_id=character_id,
        owner_id="o1",
        job_id=job,
        image={"uri": stored.uri},
        prompt="a portrait",
        scene_index=seed,
        idr_raw=0.9,
        idr_calibrated=0.9,
        encoder="dlib",
        tags={"setting": [f"place {seed}"]},
    )
    assert created and row is not None


def _succeeded(character_id: str, idr: float) -> events_pb2.JobEvent:
    ev = events_pb2.JobEvent(job_id=f"job_{uuid.uuid4().hex[:12]}", character_id=character_id)
    ev.metrics.idr_before.CopyFrom(common_pb2.IdrScore(calibrated=idr, encoder="dlib"))
    return ev


async def test_time_and_degradation_triggers_start_one_run_each(nats_server, tiny_model, tmp_path) -> None:
    env = {
        **_env(nats_server.url, tiny_model),
        "IDLOCK_TRAINER_WATCH_WINDOW": "3",
        "IDLOCK_TRAINER_WATCH_MIN_JOBS": "2",
        "IDLOCK_TRAINER_WATCH_ROLLBACK": "false",  # runs here may activate LoRAs: this is about the plain drop
    }
    character = f"c_{uuid.uuid4().hex[:8]}"
    async with running_trainer(tmp_path, env, alternating_scorer()) as (servicer, _channel):
        triggers, history = servicer.triggers, servicer.watch.history
        for seed in (71, 72):
            await _golden(servicer, character, seed)
        first = await triggers.start(character, "manual:1", "asked by a test")
        assert first is not None and first.id == run_id_for(character, "manual:1")
        assert await triggers.start(character, "manual:1", "asked again") is None  # the same trigger: one run

        later = tm.utcnow() + timedelta(days=8)
        assert await triggers.due() == []  # it just ran
        assert await triggers.due(later) == []  # no golden image since
        await _golden(servicer, character, 73)
        assert await triggers.due() == []  # a new image, but not a week yet
        ((who, last, fresh),) = await triggers.due(later)
        assert (who, last.id, fresh) == (character, first.id, 1)
        (weekly,) = await triggers.run_due(later)
        assert weekly.id == run_id_for(character, f"weekly:{first.id}")
        assert await triggers.run_due(later) == []  # asked twice (a restart, another replica): one run

        # the watch marks a drop; the character trains again for it
        for idr in (0.82, 0.8, 0.81, 0.6, 0.61):
            await servicer.watch.observe(_succeeded(character, idr))
        # (the runs train meanwhile: their activations or rejections are decisions too, left out here)
        decisions = [d for d in await history.decisions(character) if d.decision in (RETRAIN, DEGRADED)]
        assert [d.decision for d in decisions] == [RETRAIN, RETRAIN, DEGRADED, RETRAIN]
        degraded = decisions[2]
        assert "identity retention degraded" in decisions[3].reason
        assert decisions[3].reason.endswith(run_id_for(character, f"degraded:{degraded.id}"))
        assert (
            "asked by a test" in decisions[0].reason
            and "1 new golden images since run" in decisions[1].reason
        )
        assert len(await servicer.repo.run_ids(character)) == 3


def _scores_per_validation(*new_idrs: float):
    """A scorer factory: the k-th validation scores the LoRA's renders new_idrs[k], the baseline's 0.5 (validate()
    renders the new LoRA's scene, then the baseline's, for each scene and seed)."""
    order = iter(new_idrs)

    async def factory(character_id: str):
        new, calls = next(order), iter(range(1000))
        return lambda image: new if next(calls) % 2 == 0 else 0.5

    return factory


async def test_the_checkpoint_that_keeps_the_identity_best_is_the_one_kept(tiny_model, tmp_path) -> None:
    env = {
        **_env("nats://127.0.0.1:1", tiny_model),  # no NATS: the run is driven here, not by the work queue
        "IDLOCK_TRAINER_CHECKPOINT_CANDIDATES": "2",
    }
    character = f"c_{uuid.uuid4().hex[:8]}"
    # the checkpoint of step 3 is validated first and keeps the identity better than the last (step 6)
    async with running_trainer(tmp_path, env, _scores_per_validation(0.95, 0.8)) as (servicer, _channel):
        for seed in (81, 82):
            await _golden(servicer, character, seed)
        built = await servicer.datasets.build(character, 0)
        run_id = run_id_for(character, "checkpoints")
        params = {"rank": 4, "steps": 6, "learning_rate": 1e-4, "batch_size": 2}
        await servicer.repo.create_run(run_id, character, built.uri, params)
        run = await servicer.runs.run(run_id)
        assert run.state == tm.RUN_SUCCEEDED, run.error

        active = await servicer.repo.get_active(character)
        assert active is not None and active.id == run.lora_id
        assert active.metrics["selected_step"] == 3.0
        assert abs(active.metrics["validation_idr_step_3"] - 0.95) < 1e-6
        assert abs(active.metrics["validation_idr_step_6"] - 0.8) < 1e-6
        assert abs(active.final_idr - 0.95) < 1e-6 and abs(active.baseline_idr - 0.5) < 1e-6
        (activated,) = [
            d for d in await servicer.watch.history.decisions(character) if d.decision == "activated"
        ]
        assert "the checkpoint of step 3" in activated.reason
