"""The render contract: one request/result model for every provider (image now, video later).

Plain dataclasses, no grpc: the servicer converts protobuf messages to these and back.
Images travel as encoded bytes (PNG/JPEG/WebP in, PNG out); the servicer resolves `ImageRef`s before calling.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

from idlock.errors import InvalidInput

#: drift modes of the offline compositor (exercise refinement): paste another face, or a distorted one
DriftMode = Literal["none", "other_face", "distorted"]

#: aspect ratios Gemini image models accept, as (name, width/height)
ASPECT_RATIOS: dict[str, float] = {
    "1:1": 1.0,
    "2:3": 2 / 3,
    "3:2": 3 / 2,
    "3:4": 3 / 4,
    "4:3": 4 / 3,
    "4:5": 4 / 5,
    "5:4": 5 / 4,
    "9:16": 9 / 16,
    "16:9": 16 / 9,
    "21:9": 21 / 9,
}

MAX_SIDE = 4096
MAX_REFERENCES = 8
#: reference images a video provider is given (Veo takes up to 3 asset references)
MAX_VIDEO_REFERENCES = 3
MAX_VIDEO_S = 60.0


@dataclass(frozen=True)
class SceneState:
    """The story state a scene shows, as canonical names per category (the request's `state`): what memory says is
    in effect, with the scene's own changes. A renderer that draws from structure reads it, not the prompt."""

    clothing: tuple[str, ...] = ()
    injuries: tuple[str, ...] = ()
    props: tuple[str, ...] = ()
    setting: tuple[str, ...] = ()
    mood: tuple[str, ...] = ()

    @classmethod
    def of(cls, tags: object) -> SceneState:
        """From anything with the five category attributes (e.g. a `StateTags` message)."""
        return cls(**{c: tuple(str(n) for n in getattr(tags, c, ())) for c in cls.__dataclass_fields__})

    def items(self) -> list[tuple[str, str]]:
        return [(c, n) for c in self.__dataclass_fields__ for n in getattr(self, c)]


@dataclass
class CastPart:
    """One character of a scene with several: its references, its place and its own state."""

    character_id: str
    name: str
    placement: str = ""
    role: str = ""
    references: list[bytes] = field(default_factory=list)
    state: SceneState = field(default_factory=SceneState)


#: the most characters one scene holds
MAX_CAST = 4


class MediaKind(str, enum.Enum):
    IMAGE = "image"
    VIDEO = "video"  # Veo / offline clip: same request, `duration_s` set, result carries `video`


@dataclass
class RenderRequest:
    """Text(+references) to image (or video). Sizes: width/height win over aspect_ratio; both empty = defaults."""

    prompt: str
    negative_prompt: str = ""
    references: list[bytes] = field(default_factory=list)
    pose_image: bytes | None = None
    width: int | None = None
    height: int | None = None
    aspect_ratio: str | None = None
    seed: int | None = None
    lora_path: str | None = None
    lora_scale: float = 1.0
    #: provider preference for this request; empty = the configured order (`settings.providers`)
    providers: list[str] = field(default_factory=list)
    job_id: str = ""
    drift: DriftMode = "none"
    #: the other face pasted when drift == "other_face"
    drift_face: bytes | None = None
    #: None = the configured default (`settings.watermark`)
    watermark: bool | None = None
    #: total time budget for the call (seconds), the caller's remaining gRPC deadline; None = no limit
    deadline_s: float | None = None
    media: MediaKind = MediaKind.IMAGE
    #: video only
    duration_s: float | None = None
    fps: int | None = None
    dialogue: str = ""
    #: resume polling this provider operation (a restarted worker) instead of starting a new one
    operation_name: str = ""
    #: the story state the scene shows; None = not given
    state: SceneState | None = None
    #: a scene with several characters (the first is the job's); `references` are then all of theirs, in order
    cast: list[CastPart] = field(default_factory=list)

    def validate(self) -> None:
        if not self.prompt or not self.prompt.strip():
            raise InvalidInput("prompt is empty")
        if len(self.cast) > MAX_CAST:
            raise InvalidInput(f"a scene holds at most {MAX_CAST} characters, {len(self.cast)} were given")
        if len(self.references) > MAX_REFERENCES:
            raise InvalidInput(f"too many reference images: {len(self.references)} > {MAX_REFERENCES}")
        for i, ref in enumerate(self.references):
            if not ref:
                raise InvalidInput(f"reference image {i} is empty")
        for name, v in (("width", self.width), ("height", self.height)):
            if v is not None and not (8 <= v <= MAX_SIDE):
                raise InvalidInput(f"{name} must be between 8 and {MAX_SIDE}, got {v}")
        if self.aspect_ratio is not None and self.aspect_ratio not in ASPECT_RATIOS:
            raise InvalidInput(f"aspect_ratio {self.aspect_ratio!r} is not one of {', '.join(ASPECT_RATIOS)}")
        if self.seed is not None and not (0 <= self.seed < 2**32):
            raise InvalidInput(f"seed must be in [0, 2**32), got {self.seed}")
        if not (0.0 <= self.lora_scale <= 4.0):
            raise InvalidInput(f"lora_scale must be in [0, 4], got {self.lora_scale}")
        if self.drift not in ("none", "other_face", "distorted"):
            raise InvalidInput(f"drift must be none, other_face or distorted, got {self.drift!r}")
        if self.drift == "other_face" and not self.drift_face:
            raise InvalidInput("drift=other_face needs drift_face (the other face image)")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise InvalidInput(f"deadline_s must be positive, got {self.deadline_s}")
        if self.duration_s is not None and not (0 < self.duration_s <= MAX_VIDEO_S):
            raise InvalidInput(f"duration_s must be in (0, {MAX_VIDEO_S:g}], got {self.duration_s}")
        if self.fps is not None and not (1 <= self.fps <= 60):
            raise InvalidInput(f"fps must be in [1, 60], got {self.fps}")
        if len(self.dialogue) > 1000:
            raise InvalidInput(f"dialogue is {len(self.dialogue)} characters long, the limit is 1000")

    def size(self, default_w: int, default_h: int) -> tuple[int, int]:
        """(width, height): explicit sizes, else the aspect ratio on the default long side, else defaults."""
        if self.width and self.height:
            return self.width, self.height
        if self.aspect_ratio:
            r = ASPECT_RATIOS[self.aspect_ratio]
            side = max(default_w, default_h)
            return (side, max(8, round(side / r))) if r >= 1 else (max(8, round(side * r)), side)
        if self.width:
            return self.width, round(self.width * default_h / default_w)
        if self.height:
            return round(self.height * default_w / default_h), self.height
        return default_w, default_h

    def aspect(self) -> str | None:
        """The aspect ratio to ask a provider for (nearest supported one when only sizes are given)."""
        if self.aspect_ratio:
            return self.aspect_ratio
        if self.width and self.height:
            return nearest_aspect(self.width, self.height)
        return None


@dataclass
class EditRequest:
    """Edit an image: inpaint where `mask` is white (whole image when no mask), guided by prompt + references."""

    image: bytes
    prompt: str
    mask: bytes | None = None
    references: list[bytes] = field(default_factory=list)
    negative_prompt: str = ""
    seed: int | None = None
    #: how far from the input the result may go (img2img / inpaint strength), 0..1
    strength: float = 0.75
    lora_path: str | None = None
    lora_scale: float = 1.0
    providers: list[str] = field(default_factory=list)
    job_id: str = ""
    watermark: bool | None = None
    deadline_s: float | None = None

    def validate(self) -> None:
        if not self.image:
            raise InvalidInput("image to edit is empty")
        if not self.prompt or not self.prompt.strip():
            raise InvalidInput("prompt is empty")
        if not (0.0 < self.strength <= 1.0):
            raise InvalidInput(f"strength must be in (0, 1], got {self.strength}")
        if len(self.references) > MAX_REFERENCES:
            raise InvalidInput(f"too many reference images: {len(self.references)} > {MAX_REFERENCES}")
        if self.seed is not None and not (0 <= self.seed < 2**32):
            raise InvalidInput(f"seed must be in [0, 2**32), got {self.seed}")
        if self.deadline_s is not None and self.deadline_s <= 0:
            raise InvalidInput(f"deadline_s must be positive, got {self.deadline_s}")


@dataclass
class RenderResult:
    """What a provider produced. `image` is PNG bytes (for video: the first frame), `video` is MP4 bytes or None."""

    image: bytes
    provider: str
    model: str
    seed: int | None
    width: int
    height: int
    latency_s: float = 0.0
    estimated_cost_usd: float = 0.0
    fallback_used: bool = False
    #: one line per provider skipped or failed before this one: "<provider>: <why>"
    fallback_reasons: list[str] = field(default_factory=list)
    #: e.g. "offline/compositor" (a development render, not a model output), "gemini/gemini-2.5-flash-image"
    label: str = ""
    mime: str = "image/png"
    watermarked: bool = False
    attempts: int = 1
    #: remarks a caller should see (references a provider could not use, no face found, ...)
    notes: list[str] = field(default_factory=list)
    media: MediaKind = MediaKind.IMAGE
    video: bytes | None = None
    video_mime: str = ""
    last_frame: bytes | None = None
    duration_s: float = 0.0
    fps: float = 0.0
    #: the provider's long-running operation (Veo), so a restarted caller resumes instead of paying again
    operation_name: str = ""
    polls: int = 0


def nearest_aspect(width: int, height: int) -> str:
    r = width / height
    return min(ASPECT_RATIOS, key=lambda k: abs(ASPECT_RATIOS[k] - r))
