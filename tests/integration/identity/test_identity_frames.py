"""ExtractFrames: first / last / every N seconds of a real video written with OpenCV, through the service."""

from __future__ import annotations

import cv2
import grpc
import numpy as np
import pytest

from idlock.settings import StorageSettings
from idlock.storage import open_store
from idlock.v1 import common_pb2
from idlock.v1 import identity_service_pb2 as pb
from idlock.v1 import identity_service_pb2_grpc as pb_grpc
from services.identity.frames import extract_frames
from tests.harness import running_service

FPS = 10.0
SECONDS = 3


def _video(path) -> bytes:
    """3 s at 10 fps; frame i is filled with grey level 8*i so a frame's index can be read back from pixels."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 48))
    assert writer.isOpened()
    for i in range(int(FPS * SECONDS)):
        writer.write(np.full((48, 64, 3), 8 * i, np.uint8))
    writer.release()
    return path.read_bytes()


def _grey_index(rgb: np.ndarray) -> int:
    return round(float(rgb.mean()) / 8)


def test_extract_frames_core(tmp_path) -> None:
    video = _video(tmp_path / "clip.mp4")
    first = extract_frames(video, "first")
    assert [f.index for f in first.frames] == [0] and _grey_index(first.frames[0].pixels) == 0
    last = extract_frames(video, "last")
    assert last.frames[0].index == 29 and _grey_index(last.frames[0].pixels) == 29
    every = extract_frames(video, "every", 1.0)
    assert [f.index for f in every.frames] == [0, 10, 20]
    assert [round(f.timestamp_s, 1) for f in every.frames] == [0.0, 1.0, 2.0]
    assert abs(every.duration_s - 3.0) < 1e-6 and every.fps == FPS


async def test_extract_frames_over_grpc(tmp_path) -> None:
    video = _video(tmp_path / "clip.mp4")
    data_dir = tmp_path / "data"
    store = await open_store(StorageSettings(), data_dir)
    stored = await store.put("videos/clip.mp4", video, "video/mp4")
    ref = common_pb2.VideoRef(uri=stored.uri, sha256=stored.sha256, mime="video/mp4")
    async with running_service("identity", data_dir) as channel:
        stub = pb_grpc.IdentityServiceStub(channel)
        reply = await stub.ExtractFrames(
            pb.ExtractFramesRequest(
                video=ref,
                selection=pb.FRAME_SELECTION_EVERY_N_SECONDS,
                every_s=1.5,
                output_prefix="frames/clip",
            )
        )
        assert [f.index for f in reply.frames] == [0, 15]
        assert abs(reply.duration_s - 3.0) < 1e-6
        png = await store.get(reply.frames[1].image.uri)
        frame = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        assert _grey_index(frame) == 15

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ExtractFrames(pb.ExtractFramesRequest(video=ref))
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "selection is required" in err.value.details()
        )

        junk = await store.put("videos/junk.mp4", b"this is not a video", "video/mp4")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ExtractFrames(
                pb.ExtractFramesRequest(
                    video=common_pb2.VideoRef(uri=junk.uri), selection=pb.FRAME_SELECTION_FIRST
                )
            )
        assert (
            err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            and "not a readable video" in err.value.details()
        )

        tampered = common_pb2.VideoRef(uri=stored.uri, sha256="0" * 64)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ExtractFrames(
                pb.ExtractFramesRequest(video=tampered, selection=pb.FRAME_SELECTION_FIRST)
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "sha256" in err.value.details()
