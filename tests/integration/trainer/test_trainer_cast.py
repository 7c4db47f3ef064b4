"""A scene of several characters, on a running trainer (real nats-server): each character's IDR is observed as its
own, and only a character whose face passes the golden threshold gets a golden image, which is a crop of its own
face, never the whole scene; the owner's thumbs down on the scene removes it."""

from __future__ import annotations

import asyncio
import io
import uuid

import numpy as np
from PIL import Image

from idlock import subjects
from idlock.bus import EventBus
from idlock.images import encode_png
from idlock.settings import NatsSettings
from idlock.v1 import common_pb2, events_pb2, orchestrator_service_pb2
from idlock.v1 import trainer_service_pb2 as pb
from idlock.v1 import trainer_service_pb2_grpc as pb_grpc
from tests.fakes.trainer_data import textured
from tests.integration.trainer.running import running_trainer
from tests.integration.trainer.test_trainer_service import _env, _until


def _scene(a: str, b: str, image: common_pb2.ImageRef) -> events_pb2.JobEvent:
    ev = events_pb2.JobEvent(
        job_id=f"job_{uuid.uuid4().hex}",
        owner_id="o1",
        character_id=a,
        status=common_pb2.JOB_STATUS_SUCCEEDED,
        result_image=image,
    )
    ev.at.GetCurrentTime()
    ev.metrics.provider = "gemini"
    ev.metrics.idr_before.CopyFrom(common_pb2.IdrScore(calibrated=0.95))  # the first one's, as a scene of one
    for cid, x, idr, scene in ((a, 16, 0.95, 4), (b, 144, 0.5, 2)):
        r = ev.metrics.cast.add(character_id=cid, face_found=True, scene_index=scene)
        r.box.CopyFrom(common_pb2.BoundingBox(x=x, y=16, width=64, height=64))
        r.idr_before.CopyFrom(common_pb2.IdrScore(calibrated=idr, encoder="dlib"))
        r.tags.props.append(f"{cid}'s prop")
    return ev


async def test_each_character_of_a_scene_is_its_own(nats_server, tiny_model, tmp_path) -> None:
    a, b = f"c_{uuid.uuid4().hex[:8]}", f"c_{uuid.uuid4().hex[:8]}"
    async with running_trainer(tmp_path, _env(nats_server.url, tiny_model)) as (servicer, channel):
        stub = pb_grpc.TrainerServiceStub(channel)
        scene = np.concatenate([textured(11, 128), textured(12, 128)], axis=1)  # 256 x 128
        stored = await servicer.rt.store.put("jobs/scene/image.png", encode_png(scene), "image/png")
        image = common_pb2.ImageRef(uri=stored.uri, sha256=stored.sha256, width=256, height=128)
        ev = _scene(a, b, image)
        bus = await EventBus.connect(NatsSettings(url=nats_server.url))
        try:
            await bus.publish(subjects.JOB_SUCCEEDED, ev, msg_id=f"{ev.job_id}:succeeded")

            async def goldens(character: str):
                return (
                    await stub.ListGoldenImages(pb.ListGoldenImagesRequest(character_id=character))
                ).images

            (golden,) = await _until(lambda: goldens(a), 30)
            history = servicer.watch.history
            await _until(lambda: history.idrs(b, 10), 30)
            assert [round(v, 2) for v in await history.idrs(a, 10)] == [0.95]
            assert [round(v, 2) for v in await history.idrs(b, 10)] == [0.5]  # its own, not the scene's
            assert not await goldens(b)  # below the golden threshold
            assert golden.job_id == f"{ev.job_id}/1" and list(golden.tags.props) == [f"{a}'s prop"]
            crop = Image.open(io.BytesIO(await servicer.rt.store.get(golden.image.uri)))
            assert golden.image.uri != image.uri and crop.size == (golden.image.width, golden.image.height)
            assert crop.size[0] < 144  # the left face and its margin: it stops before the other face (x 144)
            assert np.array_equal(np.asarray(crop)[40, 40], scene[40, 40])

            down = orchestrator_service_pb2.FEEDBACK_RATING_DOWN
            await bus.publish(
                subjects.FEEDBACK_RECORDED,
                events_pb2.FeedbackRecorded(job_id=ev.job_id, character_id=a, rating=down),
            )
            async with asyncio.timeout(30):
                while await goldens(a):
                    await asyncio.sleep(0.1)
        finally:
            await bus.close()
