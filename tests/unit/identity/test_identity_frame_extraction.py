"""Frame extraction on videos written with OpenCV in the test."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from idlock.errors import InvalidInput
from services.identity.frames import extract_frames

FPS = 10
N = 35  # 3.5 s


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    assert writer.isOpened()
    for i in range(N):
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[:, :, 2] = i * 7  # red channel (BGR order) encodes the frame index
        writer.write(frame)
    writer.release()
    return path


def _index(pixels: np.ndarray) -> int:
    return round(float(pixels[..., 0].mean()) / 7)  # RGB now: red is channel 0


def test_first(video) -> None:
    out = extract_frames(video, "first")
    assert [(f.index, f.timestamp_s) for f in out.frames] == [(0, 0.0)]
    assert out.frames[0].pixels.shape == (48, 64, 3) and _index(out.frames[0].pixels) == 0
    assert out.fps == pytest.approx(FPS) and out.duration_s == pytest.approx(3.5)


def test_last_from_bytes(video) -> None:
    out = extract_frames(video.read_bytes(), "last")
    (f,) = out.frames
    assert f.index == N - 1 and f.timestamp_s == pytest.approx(3.4) and _index(f.pixels) == N - 1


def test_every_n_seconds(video) -> None:
    out = extract_frames(video, "every", every_s=1.0)
    assert [f.index for f in out.frames] == [0, 10, 20, 30]
    assert [f.timestamp_s for f in out.frames] == pytest.approx([0.0, 1.0, 2.0, 3.0])
    assert [_index(f.pixels) for f in out.frames] == [0, 10, 20, 30]
    half = extract_frames(video, "every", every_s=0.5)
    assert len(half.frames) == 7


def test_bad_inputs(video, tmp_path) -> None:
    with pytest.raises(InvalidInput, match=r"^video is empty \(0 bytes\)$"):
        extract_frames(b"", "first")
    with pytest.raises(
        InvalidInput, match=r"^video is not a readable video: it (cannot be opened|has no decodable frame)"
    ):
        extract_frames(b"this is not a video at all" * 10, "first")
    with pytest.raises(InvalidInput, match="unknown frame mode 'middle'"):
        extract_frames(video, "middle")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="every_s must be positive"):
        extract_frames(video, "every", every_s=0)
    with pytest.raises(InvalidInput, match="does not exist"):
        extract_frames(tmp_path / "missing.mp4", "first")
    with pytest.raises(InvalidInput, match="exceed the limit of 100 pixels"):
        extract_frames(video, "first", max_pixels=100)
