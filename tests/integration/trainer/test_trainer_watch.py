"""The degradation watch on a running trainer (real nats-server): succeeded jobs' IDRs arrive as job.succeeded
events; a LoRA whose jobs fall below the jobs before its activation is rolled back at once, with a decision event
that says why; a character whose recent jobs fall below the ones before them is marked degraded, once per drop."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from idlock import subjects
from idlock.bus import EventBus
from idlock.delivered import delivered_idr
from idlock.settings import NatsSettings
from idlock.v1 import common_pb2, events_pb2
from idlock.v1 import trainer_service_pb2 as pb
from idlock.v1 import trainer_service_pb2_grpc as pb_grpc
from services.trainer.journal import ACTIVATED, DEGRADED, ROLLED_BACK
from services.trainer.watch import Drop
from tests.harness import stream_events
from tests.integration.trainer.running import running_trainer
from tests.metrics_probe import Change

WATCH_ENV = {
    "IDLOCK_TRAINER_AUTO_TRAIN_MIN_IMAGES": "0",
    "IDLOCK_TRAINER_WATCH_WINDOW": "5",
    "IDLOCK_TRAINER_WATCH_MIN_JOBS": "3",
    "IDLOCK_TRAINER_WATCH_MARGIN": "0.05",
}


def succeeded(
    character_id: str, idr: float, lora_id: str = "", refined_to: float = 0.0
) -> events_pb2.JobEvent:
    ev = events_pb2.JobEvent(
        job_id=f"job_{uuid.uuid4().hex[:12]}",
        character_id=character_id,
        status=common_pb2.JOB_STATUS_SUCCEEDED,
    )
    ev.metrics.idr_before.CopyFrom(common_pb2.IdrScore(calibrated=idr, encoder="dlib"))
    if refined_to:
        ev.metrics.refined = True
        ev.metrics.idr_after.CopyFrom(common_pb2.IdrScore(calibrated=refined_to, encoder="dlib"))
    ev.metrics.lora_id, ev.metrics.provider = lora_id, "compositor"
    ev.at.GetCurrentTime()
    return ev


def test_the_delivered_idr_is_the_refined_one_and_a_drop_needs_enough_jobs() -> None:
    assert delivered_idr(succeeded("c", 0.4, refined_to=0.7).metrics) == (pytest.approx(0.7), "dlib", "image")
    assert delivered_idr(succeeded("c", 0.4).metrics) == (pytest.approx(0.4), "dlib", "image")
    assert delivered_idr(events_pb2.JobEvent(job_id="j").metrics) is None  # not scored: nothing to keep
    assert Drop([0.6] * 3, [0.8] * 3).beyond(0.05, 3)
    assert not Drop([0.6] * 2, [0.8] * 3).beyond(0.05, 3)
    assert not Drop([0.77] * 3, [0.8] * 3).beyond(0.05, 3)


async def test_a_lora_that_lowers_identity_is_rolled_back_and_a_drop_is_said_once(
    nats_server, tmp_path
) -> None:
    env = {"IDLOCK_NATS_URL": nats_server.url, **WATCH_ENV}
    character, plain = f"c_{uuid.uuid4().hex[:8]}", f"c_{uuid.uuid4().hex[:8]}"
    grew = Change()
    async with running_trainer(tmp_path, env) as (servicer, channel):
        stub = pb_grpc.TrainerServiceStub(channel)
        repo, history = servicer.repo, servicer.watch.history
        bus = await EventBus.connect(NatsSettings(url=nats_server.url))

        async def feed(character_id: str, idrs: list[float], lora_id: str = "") -> None:
            before = len(await history.idrs(character_id, 1000))
            for idr in idrs:
                ev = succeeded(character_id, idr, lora_id)
                await bus.publish(subjects.JOB_SUCCEEDED, ev, msg_id=f"{ev.job_id}:succeeded")
            async with asyncio.timeout(30):
                while len(await history.idrs(character_id, 1000)) < before + len(idrs):
                    await asyncio.sleep(0.05)

        try:
            loras = []
            for _ in range(2):
                row = await repo.register_lora(character, run_id="", dataset_uri="", training_images=10)
                loras.append(await repo.update_lora(row.id, file_uri=f"s3://b/{row.id}", status="validating"))
            first, second = loras
            await stub.ActivateLora(pb.ActivateLoraRequest(lora_id=first.id))
            await feed(character, [0.80, 0.82, 0.79, 0.81], first.id)
            await stub.ActivateLora(pb.ActivateLoraRequest(lora_id=second.id))
            await feed(character, [0.60, 0.58], second.id)
            active = (await stub.GetActiveLora(pb.GetActiveLoraRequest(character_id=character))).lora
            assert active.id == second.id  # two jobs are not enough to judge it
            await feed(character, [0.61], second.id)

            active = (await stub.GetActiveLora(pb.GetActiveLoraRequest(character_id=character))).lora
            assert active.id == first.id  # the previous LoRA is active again
            (decision,) = await stream_events(
                nats_server.url,
                subjects.LEARNING_DECIDED,
                want=1,
                match=lambda e: e.character_id == character and e.decision == ROLLED_BACK,
            )
            assert decision.decision == ROLLED_BACK and decision.lora_id == second.id
            assert (decision.recent_jobs, decision.baseline_jobs) == (3, 4)
            assert abs(decision.recent_idr - 0.5967) < 1e-3 and abs(decision.baseline_idr - 0.805) < 1e-3
            assert f"LoRA {second.id}" in decision.reason and "before its activation" in decision.reason
            archived = await stream_events(
                nats_server.url, subjects.LORA_ARCHIVED, want=2, match=lambda e: e.character_id == character
            )
            assert second.id in {e.lora_id for e in archived}
            assert grew("idlock_lora_rollbacks_total") == 1

            # without a LoRA: the last 5 jobs against the 5 before them; the drop is said once
            await feed(plain, [0.80, 0.81, 0.79, 0.80, 0.82, 0.60, 0.61])
            assert not [d for d in await history.decisions(plain)]  # 0.68 vs 0.80 over 2 jobs: too few before
            await feed(plain, [0.60])
            await feed(plain, [0.59, 0.62])
            decisions = await history.decisions(plain)
            assert [d.decision for d in decisions] == [DEGRADED], [d.reason for d in decisions]
            assert decisions[0].recent_jobs == 5 and decisions[0].baseline_jobs == 3
            # a redelivered event is not counted twice
            ev = succeeded(plain, 0.1)
            for _ in range(2):
                await bus.publish(subjects.JOB_SUCCEEDED, ev, msg_id=f"{ev.job_id}:again:{uuid.uuid4().hex}")
            async with asyncio.timeout(30):
                while len(await history.idrs(plain, 1000)) < 11:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            assert len(await history.idrs(plain, 1000)) == 11

            # the owner's report
            report = await stub.GetLearningReport(pb.GetLearningReportRequest(character_id=character))
            # the character's history: two activations by request, then the watch's rollback
            assert report.state == ROLLED_BACK
            assert [(d.decision, d.lora_id) for d in report.decisions] == [
                (ACTIVATED, first.id),
                (ACTIVATED, second.id),
                (ROLLED_BACK, second.id),
            ]
            by_lora = {g.key: g.stats for g in report.by_lora}
            assert set(by_lora) == {first.id, second.id} and by_lora[second.id].count == 3
            assert abs(by_lora[first.id].mean - 0.805) < 1e-3 and abs(by_lora[second.id].min - 0.58) < 1e-3
            # auto-training is off here
            assert report.overall.count == 7 and report.golden_until_training == 0
            assert report.stage == "rolled_back"
            # each job once, oldest first, with the LoRA that made it: the points of the studio's chart
            assert [(round(p.idr, 2), p.lora_id) for p in report.recent] == [
                *[(v, first.id) for v in (0.80, 0.82, 0.79, 0.81)],
                *[(v, second.id) for v in (0.60, 0.58, 0.61)],
            ]
            assert [p.at.ToDatetime() for p in report.recent] == sorted(
                p.at.ToDatetime() for p in report.recent
            )
            plain_report = await stub.GetLearningReport(pb.GetLearningReportRequest(character_id=plain))
            assert plain_report.state == DEGRADED and plain_report.overall.count == 11
            assert plain_report.stage == "idle"  # no golden image, no LoRA
            assert [g.key for g in plain_report.by_provider] == ["compositor"]
            assert [g.key for g in plain_report.by_lora] == ["none"] and len(plain_report.by_week) == 1
            assert abs(plain_report.overall.min - 0.1) < 1e-6 and plain_report.overall.std > 0
        finally:
            await bus.close()
