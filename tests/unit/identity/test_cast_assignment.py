"""Which face is which character in a scene of several (`idlock.faces.cast`): the Hungarian assignment, faces held
to the places asked for (and a swap reported), extras, and one face passing for two characters."""

from __future__ import annotations

import numpy as np
import pytest

from idlock.faces.cast import assign, placement_of

LEFT, RIGHT, MIDDLE = (10, 10, 60, 60), (200, 10, 250, 60), (100, 10, 150, 60)


def passes(s: float) -> bool:
    return s >= 0.5


@pytest.mark.parametrize(
    ("role", "place"),
    [
        ("on the left", "left"),
        ("Right side, holding the map", "right"),
        ("in the centre", "center"),
        ("in the middle of the room", "center"),
        ("between them", ""),
        ("", ""),
    ],
)
def test_a_role_names_a_place(role: str, place: str) -> None:
    assert placement_of(role) == place


def test_each_face_goes_to_at_most_one_character_and_the_rest_are_extras() -> None:
    sims = np.array([[0.9, 0.1, 0.2], [0.1, 0.8, 0.3]])  # characters x faces
    out = assign(sims, [LEFT, RIGHT, MIDDLE], passes=passes)
    assert out.faces == {0: 0, 1: 1} and out.extras == [2]
    assert not out.swapped and out.bleeds == []


def test_faces_at_each_others_places_are_swapped_and_held_to_the_places_asked() -> None:
    # character 0 asked on the left, 1 on the right; their best faces are the other way round
    sims = np.array([[0.1, 0.9], [0.8, 0.2]])
    plain = assign(sims, [LEFT, RIGHT], passes=passes)
    assert plain.faces == {0: 1, 1: 0} and not plain.swapped  # no places asked: identity decides
    placed = assign(sims, [LEFT, RIGHT], ["left", "right"], passes=passes)
    assert placed.swapped and placed.faces == {0: 0, 1: 1}
    right_way = assign(sims, [LEFT, RIGHT], ["right", "left"], passes=passes)
    assert not right_way.swapped and right_way.faces == {0: 1, 1: 0}


def test_places_are_used_only_when_every_character_has_a_distinct_one() -> None:
    sims = np.array([[0.1, 0.9], [0.8, 0.2]])
    for places in (["left", ""], ["left", "left"]):
        out = assign(sims, [LEFT, RIGHT], places, passes=passes)
        assert out.faces == {0: 1, 1: 0} and not out.swapped, places


def test_one_face_passing_for_two_characters_is_bleed() -> None:
    sims = np.array([[0.9, 0.3], [0.85, 0.2]])  # both look most like face 0, and it passes for both
    out = assign(sims, [LEFT, RIGHT], passes=passes)
    assert out.bleeds == [([0, 1], 0)]
    alike_but_failing = assign(np.array([[0.4, 0.3], [0.45, 0.2]]), [LEFT, RIGHT], passes=passes)
    assert alike_but_failing.bleeds == []


def test_more_characters_than_faces_leaves_one_without() -> None:
    out = assign(np.array([[0.9], [0.7]]), [LEFT], ["left", "right"], passes=passes)
    assert out.faces == {0: 0} and out.extras == [] and not out.swapped
    assert out.bleeds == [([0, 1], 0)]
    assert assign(np.zeros((2, 0)), []).faces == {}
