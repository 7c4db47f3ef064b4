"""Output moderation: every rendered image (and a video's poster) is checked by an offline NSFW classifier before
it is kept; one it flags is not stored, and the job fails `moderated`.

The classifier is NudeNet's detector (an ONNX model, run on onnxruntime, ~40 ms per image on a CPU). It is an
*optional* extra: the `nudenet` wheel's metadata says MIT but its licence text is AGPL-3.0, so IDLock does not
install it by default. Install it with `pip install --no-deps nudenet` (its own dependency, opencv-python-headless,
would overwrite the opencv-python IDLock uses; nudenet runs on either). Without it, results say
"not classified (no NSFW classifier installed)" in their provenance (`IDLOCK_MODERATION_OUTPUT_CLASSIFIER=auto`,
the default), or the render service refuses to start (`=nudenet`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from idlock.errors import ContentBlocked, PreconditionFailed
from idlock.settings import IdlockSettings

#: what the detector finds that makes an image explicit (its other classes are faces, feet, covered parts)
EXPLICIT_LABELS = (
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "BUTTOCKS_EXPOSED",
    "ANUS_EXPOSED",
)
NOT_CLASSIFIED = "not classified (no NSFW classifier installed: pip install --no-deps nudenet)"


class OutputModerationSettings(IdlockSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_MODERATION_OUTPUT_")
    component: ClassVar[str] = "moderation"

    classifier: Literal["auto", "nudenet", "none"] = Field(
        "auto",
        description=(
            "The NSFW classifier that checks rendered images before they are kept: nudenet (the optional extra; "
            "start-up fails without it), auto (nudenet when installed, else results say they were not classified) "
            "or none (results say so)."
        ),
    )
    block_labels: list[str] = Field(
        default_factory=lambda: list(EXPLICIT_LABELS),
        description="Detector classes that block an image (JSON list).",
    )
    min_score: float = Field(
        0.5, ge=0.05, le=1.0, description="A detection at or above this score blocks the image."
    )


@dataclass(frozen=True)
class Verdict:
    """What the classifier said: `note` goes into the result's provenance."""

    blocked: bool
    note: str


def installed() -> bool:
    return importlib.util.find_spec("nudenet") is not None


class OutputClassifier:
    """Checks images; thread-safe (onnxruntime sessions run concurrently), loaded on first use."""

    def __init__(self, settings: OutputModerationSettings | None = None) -> None:
        self.settings = settings or OutputModerationSettings()
        mode = self.settings.classifier
        if mode == "nudenet" and not installed():
            raise PreconditionFailed(
                "IDLOCK_MODERATION_OUTPUT_CLASSIFIER=nudenet but the nudenet package is not installed; install it "
                "with `pip install --no-deps nudenet`, or set the classifier to auto or none"
            )
        self.enabled = mode == "nudenet" or (mode == "auto" and installed())
        self._detector = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._detector is None:
                from nudenet import NudeDetector

                self._detector = NudeDetector()
            return self._detector

    def check(self, image: bytes) -> Verdict:
        """Blocking call (run it in a worker thread)."""
        if not self.enabled:
            how = (
                NOT_CLASSIFIED if self.settings.classifier == "auto" else "not classified (classifier: none)"
            )
            return Verdict(False, how)
        found = self._load().detect(image)
        blocking = sorted(
            (
                d
                for d in found
                if d["class"] in self.settings.block_labels and d["score"] >= self.settings.min_score
            ),
            key=lambda d: -d["score"],
        )
        if blocking:
            what = ", ".join(f"{d['class']} {d['score']:.2f}" for d in blocking[:3])
            return Verdict(True, f"nudenet: blocked ({what})")
        return Verdict(False, "nudenet: passed")

    async def screen(self, image: bytes) -> str:
        """The provenance note, or ContentBlocked (reason `moderated`) for an image the classifier flags. The
        model runs in a worker thread; without a classifier nothing leaves the event loop."""
        verdict = await asyncio.to_thread(self.check, image) if self.enabled else self.check(image)
        if verdict.blocked:
            raise ContentBlocked(
                f"the rendered image was refused by the output classifier ({verdict.note}); it was not kept"
            )
        return verdict.note


__all__ = ["EXPLICIT_LABELS", "NOT_CLASSIFIED", "OutputClassifier", "OutputModerationSettings", "Verdict"]
