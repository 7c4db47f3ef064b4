"""A scene's prompt embedding, kept from its context for its record (`text_embed.ScenePrompts`)."""

from __future__ import annotations

import numpy as np

from services.memory.text_embed import ScenePrompts
from tests.clock import ManualClock


def vec(i: int) -> np.ndarray:
    v = np.zeros(4, dtype=np.float32)
    v[i] = 1.0
    return v


def test_a_vector_is_taken_once_by_the_same_character_and_text() -> None:
    kept = ScenePrompts()
    kept.keep("c1", "she rides north", vec(0))
    assert kept.take("c2", "she rides north") is None  # another character's scene
    assert kept.take("c1", "she rides south") is None  # other words
    assert np.array_equal(kept.take("c1", "she rides north"), vec(0))
    assert kept.take("c1", "she rides north") is None  # a later scene with the same words embeds its own


def test_vectors_expire_and_are_bounded() -> None:
    clock = ManualClock(0.0)
    kept = ScenePrompts(max_entries=2, ttl_s=60, clock=clock)
    kept.keep("c1", "a", vec(0))
    clock.now = 61
    assert kept.take("c1", "a") is None  # a scene whose render outlasted the ttl embeds its text again
    for i, text in enumerate(("a", "b", "c")):
        kept.keep("c1", text, vec(i))
    assert len(kept) == 2 and kept.take("c1", "a") is None  # the oldest went first
    assert np.array_equal(kept.take("c1", "c"), vec(2))


def test_an_erased_character_leaves_nothing_behind() -> None:
    kept = ScenePrompts()
    kept.keep("c1", "a", vec(0))
    kept.keep("c1", "b", vec(1))
    kept.keep("c2", "a", vec(2))
    kept.forget("c1")
    assert len(kept) == 1 and np.array_equal(kept.take("c2", "a"), vec(2))
