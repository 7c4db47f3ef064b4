"""The context of a scene with several characters (issue #23): each character's own context (its semantic memory,
state and scenes, as for a scene of one) read side by side, and one prompt that keeps their state apart
(`prompt.compose_cast_template`). The template composes it whether or not an LLM is configured, and says so."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from idlock.errors import InvalidInput
from idlock.text import sanitize_prompt
from services.memory.context import MemoryContext, sheet_of
from services.memory.episodes import Story
from services.memory.prompt import CastInput, ComposedPrompt, SceneLine, StyleOverrides, compose_cast_template

#: the most characters one scene holds
MAX_CAST = 4
LLM_NOT_USED = "a scene of several characters is composed by the template (the LLM formats one character)"


@dataclass
class SceneContext:
    members: list[MemoryContext]
    prompt: ComposedPrompt
    #: why the template composed it though an LLM is configured ("" without one)
    fallback_reason: str = ""


def check_cast(cast: list[tuple[str, str]]) -> None:
    """2 to MAX_CAST characters, each once."""
    if not 2 <= len(cast) <= MAX_CAST:
        raise InvalidInput(
            f"a scene of several characters holds 2 to {MAX_CAST} of them, {len(cast)} were given"
        )
    ids = [cid for cid, _ in cast]
    twice = sorted({c for c in ids if ids.count(c) > 1})
    if twice:
        raise InvalidInput(f"character {twice[0]} is in the scene's cast twice: list each character once")
    if any(not cid for cid in ids):
        raise InvalidInput("a cast member has no character_id")


async def scene_context(
    story: Story, cast: list[tuple[str, str]], owner: str | None, user_prompt: str, style_overrides: list[str]
) -> SceneContext:
    """Each (character id, role)'s context, and the scene's prompt."""
    check_cast(cast)
    rt = story.rt
    members = await asyncio.gather(
        *(story.context(cid, owner, user_prompt, style_overrides) for cid, _ in cast)
    )
    prompt = sanitize_prompt(user_prompt, max_len=rt.config.prompt_max_chars, deny_list=rt.config.deny_list)
    inputs = [_cast_input(ctx, role) for ctx, (_, role) in zip(members, cast, strict=True)]
    composed = compose_cast_template(
        inputs, prompt, StyleOverrides.from_strings(style_overrides), style_guide=rt.config.style_guide
    )
    return SceneContext(list(members), composed, LLM_NOT_USED if rt.llm is not None else "")


def _cast_input(ctx: MemoryContext, role: str) -> CastInput:
    ch: Any = ctx.character
    return CastInput(
        sheet=sheet_of(ch),
        role=role,
        state=ctx.state if ctx.state.last_scene is not None else None,
        recent_scenes=tuple(SceneLine(e.scene_index, e.text) for e in ctx.recent),
        ended=tuple(ctx.recently_ended),
    )


__all__ = ["MAX_CAST", "SceneContext", "check_cast", "scene_context"]
