"""The prompt of a scene with several characters (`prompt.compose_cast_template`): each character's sheet and own
state under its own name and role, nothing of one said of another, the setting shared, and the constraints and
negative tokens that keep identities apart; the same inputs give the same bytes."""

from __future__ import annotations

import pytest

from idlock.errors import InvalidInput
from services.memory.prompt import CastInput, CharacterSheet, SceneLine, compose_cast_template
from services.memory.scene import check_cast
from services.memory.state import SceneTags, compute_state


def _members() -> list[CastInput]:
    arya = compute_state(
        [
            SceneTags(1, {"props": ["silver sword"], "setting": ["castle courtyard"]}),
            SceneTags(2, {"injuries": ["scar on the cheek"]}),
        ]
    )
    bran = compute_state([SceneTags(1, {"clothing": ["red cloak"]})])
    return [
        CastInput(
            CharacterSheet(name="Arya", hair="short brown hair", must_keep=("grey eyes",)),
            role="on the left",
            state=arya,
            recent_scenes=(SceneLine(2, "Arya is cut in a duel"),),
        ),
        CastInput(CharacterSheet(name="Bran", eyes="blue"), role="on the right", state=bran),
        CastInput(CharacterSheet(name="Cora")),  # a first scene: nothing recorded
    ]


def test_each_character_keeps_its_own_state_under_its_name() -> None:
    out = compose_cast_template(_members(), "They meet at the gate")
    sheet, state = out.sections["CHARACTER_SHEET"], out.sections["RECENT_STATE"]
    assert "Person 1: Arya (on the left)" in sheet and "Person 2: Bran (on the right)" in sheet
    assert "Person 3: Cora" in sheet and "3 different people" in sheet
    lines = {line.split(" now ")[0]: line for line in state.splitlines() if " now (" in line}
    assert "silver sword" in lines["Arya"] and "scar on the cheek" in lines["Arya"]
    assert "red cloak" in lines["Bran"] and "silver sword" not in lines["Bran"]
    assert "red cloak" not in lines["Arya"]
    assert "Cora: first scene, nothing recorded yet" in state
    assert "Arya, scene 2: Arya is cut in a duel" in state
    # the setting is the scene's, said once, not one character's item
    assert "Shared setting (unless the scene says otherwise): castle courtyard" in state
    assert "castle courtyard" not in lines["Arya"]
    assert out.sections["USER_SCENE"] == "They meet at the gate"
    cons = out.sections["CONSTRAINTS"]
    assert "never give one person's items to another" in cons and "Arya keeps: grey eyes." in cons
    assert "swapped faces" in out.negative_prompt and "merged faces" in out.negative_prompt
    assert out.engine == "template"


def test_the_same_scene_composes_the_same_bytes() -> None:
    a = compose_cast_template(_members(), "They meet at the gate")
    b = compose_cast_template(_members(), "They meet at the gate")
    assert a.prompt == b.prompt and a.template_hash == b.template_hash
    assert compose_cast_template(_members()[::-1], "They meet at the gate").prompt != a.prompt


def test_a_cast_is_two_to_four_characters_each_once() -> None:
    check_cast([("a", "on the left"), ("b", "")])
    for cast, words in (
        ([("a", "")], "2 to 4"),
        ([(c, "") for c in "abcde"], "2 to 4"),
        ([("a", ""), ("b", ""), ("a", "")], "character a is in the scene's cast twice"),
        ([("a", ""), ("", "")], "no character_id"),
    ):
        with pytest.raises(InvalidInput, match=words):
            check_cast(cast)
