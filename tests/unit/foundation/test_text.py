"""strip_control: one answer whether the text is ASCII (read without a look at each character) or not."""

from __future__ import annotations

import random
import unicodedata

import pytest

from idlock.text import strip_control


def _by_category(text: str) -> str:
    """The rule written out character by character: what strip_control must answer."""
    kept = []
    for ch in unicodedata.normalize("NFC", text):
        if ch in "\n\r\t\v\f":
            kept.append(" ")
        elif unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"):
            kept.append(ch)
    return " ".join("".join(kept).split())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Arya\trides\n\nnorth  ", "Arya rides north"),
        ("a\x00b\x1bc\x7fd", "abcd"),  # C0 controls and DEL are dropped, not spaced
        ("cafe\u0301 \u200bbar\u202e", "café bar"),  # NFC; zero-width space and bidi override dropped
        ("line\u2028next", "line next"),  # a separator that is whitespace
        ("", ""),
    ],
)
def test_strip_control(text: str, expected: str) -> None:
    assert strip_control(text) == expected


def test_ascii_and_unicode_texts_follow_the_same_rule() -> None:
    rng = random.Random(7)
    alphabet = [chr(i) for i in range(128)] + ["é", "e\u0301", "\u200b", "\u202e", "\u00a0", "\u2028", "ß"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert strip_control(text) == _by_category(text), repr(text)
