"""Video frame extraction with OpenCV: the first frame (IDR of a generated video), the last (its end state) or one
frame every N seconds. Frames come back as upright RGB uint8 arrays with their timestamps."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from idlock import refs
from idlock.errors import InvalidInput

FrameMode = Literal["first", "last", "every"]


@dataclass
class Frame:
    index: int
    timestamp_s: float
    pixels: np.ndarray


@dataclass
class VideoFrames:
    frames: list[Frame]
    #: frames per second from the container (0.0 when it does not say)
    fps: float
    #: frame count / fps (0.0 when unknown)
    duration_s: float
    width: int
    height: int


def extract_frames(
    video: bytes | bytearray | str | Path,
    mode: FrameMode = "first",
    every_s: float = 1.0,
    *,
    max_frames: int = 600,
    max_pixels: int = 50_000_000,
) -> VideoFrames:
    """Frames of a video given as bytes or a path. `every` takes one frame every `every_s` seconds (first at 0)."""
    if mode not in ("first", "last", "every"):
        raise InvalidInput(f"unknown frame mode {mode!r}: use first, last or every")
    if mode == "every" and not (every_s > 0):
        raise InvalidInput(f"every_s must be positive (got {every_s})")
    tmp: str | None = None
    if isinstance(video, (bytes, bytearray, memoryview)):
        data = bytes(video)
        if not data:
            raise InvalidInput("video is empty (0 bytes)")
        fd, tmp = tempfile.mkstemp(suffix=refs.video_suffix(data), prefix="idlock-video-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        path = tmp
    else:
        path = str(video)
        if not Path(path).is_file():
            raise InvalidInput(f"video file {path} does not exist")
    try:
        return _extract(path, mode, every_s, max_frames, max_pixels)
    finally:
        if tmp is not None:
            os.unlink(tmp)


def _extract(path: str, mode: FrameMode, every_s: float, max_frames: int, max_pixels: int) -> VideoFrames:
    cap = cv2.VideoCapture(path)
    try:
        if not cap.isOpened():
            raise InvalidInput(
                "video is not a readable video: it cannot be opened (not a video, or an unsupported "
                "container or codec)"
            )
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if w * h > max_pixels:
            raise InvalidInput(
                f"video frames of {w}x{h} = {w * h} pixels exceed the limit of {max_pixels} pixels"
            )
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (0 < fps < 1000):
            fps = 0.0
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

        def stamp(index: int) -> float:
            if fps:
                return round(index / fps, 6)
            return round(float(cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0, 6)

        def rgb(frame: np.ndarray) -> np.ndarray:
            return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

        frames: list[Frame] = []
        if mode == "first":
            ok, frame = cap.read()
            if ok:
                frames.append(Frame(0, 0.0, rgb(frame)))
        elif mode == "last":
            # grab() walks the stream without decoding; only the last frame is decoded (frame counts in container
            # headers are not reliable enough to seek to)
            index, last = -1, None
            while cap.grab():
                index += 1
                last = index
            if last is not None:
                count = last + 1
                cap.release()
                cap = cv2.VideoCapture(path)
                for _ in range(last):
                    cap.grab()
                ok, frame = cap.read()
                if ok:
                    frames.append(Frame(last, stamp(last), rgb(frame)))
        else:
            index, next_t = -1, 0.0
            while len(frames) < max_frames and cap.grab():
                index += 1
                t = stamp(index)
                if t + 1e-6 >= next_t:
                    ok, frame = cap.retrieve()
                    if not ok:
                        break
                    frames.append(Frame(index, t, rgb(frame)))
                    next_t = (np.floor((t + 1e-6) / every_s) + 1) * every_s
        if not frames:
            raise InvalidInput("video is not a readable video: it has no decodable frame")
        duration = round(count / fps, 6) if (fps and count > 0) else 0.0
        return VideoFrames(frames=frames, fps=fps, duration_s=duration, width=w, height=h)
    finally:
        cap.release()
