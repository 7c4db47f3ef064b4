"""Story-so-far consolidation: every N scenes (5 images / 3 videos by default) a summary of what happened.

An LLM writes it when one is configured (groq, temperature 0); otherwise, or when the LLM fails, a deterministic
digest does. Each summary says which engine made it (`engine="llm"|"digest"`, plus the fallback reason).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from .clock import ModelClock
from .llm import GroqLlm, LlmUnavailable
from .prompt import strip_control
from .state import StoryState

log = logging.getLogger(__name__)

SUMMARY_SYSTEM = (
    "You summarise a character's story for an image-generation memory. Write a short factual story-so-far in "
    "plain prose (at most 5 sentences) from the scenes given: what happened, what the character now wears, carries "
    "and suffers from. Do not invent events or describe the face. Output the summary only."
)


@dataclass(frozen=True)
class ConsolidationPolicy:
    every_images: int = 5
    every_videos: int = 3

    def due(self, kinds_since_last: Sequence[str]) -> bool:
        """True when the scenes since the last summary add up to a consolidation.

        Each image counts 1/every_images and each video 1/every_videos (so 5 images, 3 videos, or a mix such as
        3 images + 2 videos with the defaults, trigger one); counted in integers to stay exact.
        """
        images = sum(1 for k in kinds_since_last if k == "image")
        videos = sum(1 for k in kinds_since_last if k == "video")
        return (
            images * self.every_videos + videos * self.every_images >= self.every_images * self.every_videos
        )


@dataclass(frozen=True)
class SceneRecord:
    scene_index: int
    kind: str
    text: str


@dataclass(frozen=True)
class SummaryResult:
    up_to_scene: int
    text: str
    engine: str  # "llm" | "digest"
    fallback_reason: str | None = None


def _clip(s: str, n: int) -> str:
    s = strip_control(s)
    return s if len(s) <= n else s[: max(n - 1, 0)].rstrip() + "…"


def digest(
    scenes: Sequence[SceneRecord],
    state: StoryState | None = None,
    previous: str = "",
    *,
    max_chars: int = 1200,
) -> str:
    """Deterministic story-so-far: the previous summary, one clause per new scene, and the current state."""
    parts: list[str] = []
    if previous.strip():
        parts.append(_clip(previous, max_chars // 3))
    ordered = sorted(scenes, key=lambda s: s.scene_index)
    if ordered:
        lines = [
            f"scene {s.scene_index} ({s.kind}): {_clip(s.text, 160) or 'no description'}" for s in ordered
        ]
        parts.append(f"Scenes {ordered[0].scene_index}-{ordered[-1].scene_index}: " + "; ".join(lines) + ".")
    if state is not None:
        held = [f"{it.category} {it.label}" for it in state.items]
        parts.append("Now: " + (", ".join(held) if held else "nothing notable") + ".")
    return _clip(" ".join(parts), max_chars)


async def consolidate(
    scenes: Sequence[SceneRecord],
    state: StoryState | None = None,
    previous: str = "",
    *,
    llm: GroqLlm | None = None,
    max_chars: int = 1200,
    clock: ModelClock | None = None,
) -> SummaryResult:
    """Summarise `scenes` (those since the previous summary) into a story-so-far; the wait on the LLM is model
    time on `clock`."""
    if not scenes:
        raise ValueError("nothing to consolidate")
    up_to = max(s.scene_index for s in scenes)
    fallback = digest(scenes, state, previous, max_chars=max_chars)
    if llm is None or not llm.enabled:
        return SummaryResult(up_to, fallback, "digest", "no llm configured")
    user = f"Previous summary: {previous.strip() or 'none'}\n\nNew scenes:\n" + "\n".join(
        f"- Scene {s.scene_index} ({s.kind}): {strip_control(s.text)}"
        for s in sorted(scenes, key=lambda s: s.scene_index)
    )
    if state is not None:
        user += "\n\nCurrent state: " + "; ".join(f"{i.category}: {i.label}" for i in state.items)
    try:
        text = strip_control(
            await (clock or ModelClock()).timed(llm.complete(SUMMARY_SYSTEM, user, purpose="summary"))
        )
    except LlmUnavailable as e:
        log.warning("consolidation llm failed, using the digest: %s", e.reason)
        return SummaryResult(up_to, fallback, "digest", e.reason)
    if not text:
        return SummaryResult(up_to, fallback, "digest", "llm summary empty")
    return SummaryResult(up_to, _clip(text, max_chars), "llm", None)
