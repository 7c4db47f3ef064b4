"""Small OpenCV helpers for video results: encode frames as WebM, read a clip's first/last frame and timing."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from idlock import refs
from idlock.errors import InvalidInput, Unavailable

#: refuse to decode clips larger than this (bytes)
MAX_VIDEO_BYTES = 512 * 1024 * 1024


#: what the offline renderer's clips are: WebM with VP8, which every browser plays (OpenCV's wheels carry no
#: H.264 encoder, and its MPEG-4 part 2 "mp4v" plays in no browser)
VIDEO_MIME = "video/webm"
VIDEO_SUFFIX = ".webm"


def write_video(frames: list[np.ndarray], fps: float) -> bytes:
    """Encode RGB uint8 frames (all one size) as WebM (VP8) and return the file's bytes."""
    import cv2

    if not frames:
        raise InvalidInput("no frames to encode")
    h, w = frames[0].shape[:2]
    fd, path = tempfile.mkstemp(suffix=VIDEO_SUFFIX)
    os.close(fd)
    try:
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"VP80"), float(fps), (w, h))
        if not writer.isOpened():
            raise Unavailable("OpenCV cannot open a VP8 (WebM) video writer")
        try:
            for f in frames:
                writer.write(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)


@dataclass
class VideoInfo:
    first: np.ndarray  # RGB
    last: np.ndarray  # RGB
    width: int
    height: int
    fps: float
    frames: int
    duration_s: float


def probe_video(data: bytes, what: str = "video") -> VideoInfo:
    """Decode a clip (any container OpenCV reads); raise InvalidInput when it is not a readable video."""
    import cv2

    if not data:
        raise InvalidInput(f"{what} is empty")
    if len(data) > MAX_VIDEO_BYTES:
        raise InvalidInput(f"{what} is too large: {len(data)} bytes")
    fd, path = tempfile.mkstemp(suffix=refs.video_suffix(data))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        cap = cv2.VideoCapture(path)
        try:
            if not cap.isOpened():
                raise InvalidInput(f"{what} cannot be opened as a video")
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            first = last = None
            n = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if first is None:
                    first = frame
                last = frame
                n += 1
        finally:
            cap.release()
    finally:
        os.unlink(path)
    if first is None or last is None:
        raise InvalidInput(f"{what} has no decodable frames")
    h, w = first.shape[:2]
    return VideoInfo(
        first=cv2.cvtColor(first, cv2.COLOR_BGR2RGB),
        last=cv2.cvtColor(last, cv2.COLOR_BGR2RGB),
        width=w,
        height=h,
        fps=fps,
        frames=n,
        duration_s=n / fps if fps > 0 else 0.0,
    )


def stamp_video(data: bytes, draw: Callable[[Image.Image], Image.Image]) -> bytes:
    """The clip with `draw` applied to every frame, re-encoded as WebM at its frame rate."""
    import cv2

    fd, path = tempfile.mkstemp(suffix=refs.video_suffix(data))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        cap = cv2.VideoCapture(path)
        frames = []
        try:
            if not cap.isOpened():
                raise InvalidInput("video to stamp cannot be opened as a video")
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 24.0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                im = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
                frames.append(np.asarray(draw(im)))
        finally:
            cap.release()
    finally:
        os.unlink(path)
    if not frames:
        raise InvalidInput("video to stamp has no decodable frames")
    return write_video(frames, fps)
