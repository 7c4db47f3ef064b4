"""Whose is what in a scene of several characters (issue #23): the prompt's clauses attributed to the characters
they name ("Arya holds a sword, and Bran wears a cloak": the sword is Arya's, the cloak Bran's), a clause without a
name going to the character named last before it (as "she" would), and the setting read from the whole prompt as
the scene's, shared. This is the labelled heuristic's reading; a vision model, when configured, is asked about each
character by name and place instead."""

from __future__ import annotations

import re
from collections.abc import Sequence

#: where a sentence splits into clauses: punctuation, or a conjunction before a capitalised word (a name)
_SENTENCES = re.compile(r"[.;!?\n]+")
_CLAUSES = re.compile(
    r",\s*(?:and|while|as|but|whereas)\s+|,\s+(?=[A-Z])|\s+(?:and|while|whereas|but)\s+(?=[A-Z])"
)


def _mentions(clause: str, name: str) -> bool:
    return bool(name) and re.search(rf"\b{re.escape(name)}\b", clause, flags=re.IGNORECASE) is not None


def clauses_by_character(prompt: str, names: Sequence[str]) -> dict[str, str]:
    """Each name's clauses of the prompt, joined ("" when none names it or follows it)."""
    out: dict[str, list[str]] = {n: [] for n in names}
    last: list[str] = []  # who "she" or "he" is: the character named last, across sentences
    for sentence in _SENTENCES.split(prompt):
        pending = ""  # "Arya" of "Arya and Bran stand ...": a clause of names only joins the next one
        for part in _CLAUSES.split(sentence):
            clause = f"{pending} and {part.strip(' ,')}" if pending else part.strip(" ,")
            if not clause.strip():
                continue
            named = [n for n in names if _mentions(clause, n)]
            rest = clause
            for n in named:
                rest = re.sub(rf"\b{re.escape(n)}\b", "", rest, flags=re.IGNORECASE)
            if named and not re.sub(r"\b(and|or|with)\b|[\s,]", "", rest, flags=re.IGNORECASE):
                pending = clause
                continue
            pending = ""
            for n in named or last:
                out[n].append(clause)
            if named:
                last = named
        if pending:
            for n in names:
                if _mentions(pending, n):
                    out[n].append(pending)
    return {n: "; ".join(parts) for n, parts in out.items()}


def vision_question(prompt: str, name: str, role: str) -> str:
    """What a vision model is asked about one character of the scene."""
    where = f" ({role})" if role else ""
    return (
        f"{prompt}\n\nThis image shows several people. Report the state of {name}{where} only: their clothing, "
        "injuries, props and mood, not those of anyone else; the setting is the scene's."
    )


__all__ = ["clauses_by_character", "vision_question"]
