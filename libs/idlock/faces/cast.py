"""Which face of a scene is which character, when a scene holds several (issue #23): every face goes to at most one
character by the Hungarian assignment on identity similarity; when every character was asked to be at a place
(left, center, right), each one is held to the face at its place instead, and a scene whose best-matching faces sit
at other characters' places is reported as swapped. Faces that go to nobody are extras; a face that is the best
match of two characters and passes for both is identity bleed (one face drawn for two people)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

#: places a role can name, left to right
PLACEMENTS = ("left", "center", "right")
_WORDS = {
    "left": "left",
    "center": "center",
    "centre": "center",
    "middle": "center",
    "right": "right",
}
_WORD = re.compile(r"[a-z]+")


def placement_of(role: str) -> str:
    """The place a role names ("Arya on the left" -> "left"; "between them" -> ""): its first place word."""
    for word in _WORD.findall(role.casefold()):
        if word in _WORDS:
            return _WORDS[word]
    return ""


@dataclass
class Assignment:
    #: character row -> face column (a character without a face is absent)
    faces: dict[int, int] = field(default_factory=dict)
    extras: list[int] = field(default_factory=list)
    #: (character rows, face column) for each face that passes for two or more characters it matches best
    bleeds: list[tuple[list[int], int]] = field(default_factory=list)
    swapped: bool = False


def _center_x(box: Sequence[float]) -> float:
    return (float(box[0]) + float(box[2])) / 2


def assign(
    sims: np.ndarray,
    boxes: Sequence[Sequence[float]],
    placements: Sequence[str] = (),
    passes: Callable[[float], bool] = lambda s: False,
) -> Assignment:
    """`sims`: characters x faces similarity; `boxes`: each face's (x0, y0, x1, y1); `placements`: per character,
    one of PLACEMENTS or ""; `passes`: whether a similarity passes as the same person."""
    n_chars, n_faces = sims.shape
    out = Assignment()
    if not n_faces:
        return out
    rows, cols = linear_sum_assignment(-sims)
    best = {int(r): int(c) for r, c in zip(rows, cols, strict=True)}
    out.faces = dict(best)
    placed = list(placements) if len(placements) == n_chars else []
    ranks = [PLACEMENTS.index(p) for p in placed if p in PLACEMENTS]
    if len(ranks) == n_chars and len(set(ranks)) == n_chars and len(best) == n_chars:
        # the faces the characters match, left to right, go to the characters in the order they were placed
        by_x = sorted(best.values(), key=lambda c: _center_x(boxes[c]))
        by_place = sorted(range(n_chars), key=lambda r: ranks[r])
        at_place = {r: by_x[i] for i, r in enumerate(by_place)}
        out.swapped = at_place != best
        out.faces = at_place
    taken = set(out.faces.values())
    out.extras = [c for c in range(n_faces) if c not in taken]
    favourite = sims.argmax(axis=1)
    for c in range(n_faces):
        fans = [r for r in range(n_chars) if int(favourite[r]) == c and passes(float(sims[r, c]))]
        if len(fans) > 1:
            out.bleeds.append((fans, c))
    return out


__all__ = ["PLACEMENTS", "Assignment", "assign", "placement_of"]
