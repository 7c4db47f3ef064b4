"""Whose is what in a scene of several (`services.orchestrator.cast_state`): the heuristic gives each character the
clauses that name it, or follow its name, and the vision model is asked about one character at a time."""

from __future__ import annotations

import pytest

from services.orchestrator.cast_state import clauses_by_character, vision_question

NAMES = ["Arya", "Bran"]


@pytest.mark.parametrize(
    ("prompt", "arya", "bran"),
    [
        (
            "Arya holds a silver sword, and Bran wears a red cloak in the courtyard",
            "Arya holds a silver sword",
            "Bran wears a red cloak in the courtyard",
        ),
        (
            "In the tavern Arya drinks. She has a bandaged arm. Bran sleeps",
            "In the tavern Arya drinks; She has a bandaged arm",
            "Bran sleeps",
        ),
        (
            "Arya and Bran stand at the gate",
            "Arya and Bran stand at the gate",
            "Arya and Bran stand at the gate",
        ),
        ("Bran hands Arya a map", "Bran hands Arya a map", "Bran hands Arya a map"),
        ("Two friends walk in the forest", "", ""),
        ("arya waves while Bran rides a horse", "arya waves", "Bran rides a horse"),
    ],
)
def test_each_character_gets_the_clauses_about_it(prompt: str, arya: str, bran: str) -> None:
    assert clauses_by_character(prompt, NAMES) == {"Arya": arya, "Bran": bran}


def test_a_name_inside_another_word_is_not_a_mention() -> None:
    assert clauses_by_character("Brandon sings", NAMES) == {"Arya": "", "Bran": ""}


def test_the_vision_model_is_asked_about_one_character() -> None:
    q = vision_question("They duel on the bridge", "Bran", "on the right")
    assert q.startswith("They duel on the bridge") and "Bran (on the right) only" in q
