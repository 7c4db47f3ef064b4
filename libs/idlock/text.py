"""Prompt text sanitising, one rule for every entry point (gateway, orchestrator, memory): control and format
characters dropped, whitespace folded, template sections of the prompt composer not openable from user text,
length limits and deny-listed terms refused by name."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from idlock.errors import InvalidInput

#: the sections of memory's prompt template (seed §7): user text must not open one of its own
SECTION_NAMES: tuple[str, ...] = (
    "MASTER_STYLE_GUIDE",
    "CHARACTER_SHEET",
    "RECENT_STATE",
    "USER_SCENE",
    "CONSTRAINTS",
)
_WS_RE = re.compile(r"\s+")


#: in ASCII the only control or format characters are C0 and DEL (category Cc), and NFC changes nothing
_ASCII_CONTROL = {c: (" " if chr(c) in "\n\r\t\v\f" else None) for c in (*range(0x20), 0x7F)}


def strip_control(text: str) -> str:
    """NFC-normalise, turn newlines/tabs into spaces, drop every other control or format character."""
    if text.isascii():  # the usual case, without a look at each character's category
        return _WS_RE.sub(" ", text.translate(_ASCII_CONTROL)).strip()
    t = unicodedata.normalize("NFC", text)
    out = []
    for ch in t:
        if ch in "\n\r\t\v\f":
            out.append(" ")
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn"):
            continue
        out.append(ch)
    return _WS_RE.sub(" ", "".join(out)).strip()


def strip_format(text: str) -> str:
    """NFC-normalise and drop control and format characters (bidi overrides, zero-width joiners and spaces) but
    keep line breaks and tabs: for descriptions, which may have paragraphs."""
    t = unicodedata.normalize("NFC", text)
    kept = (ch for ch in t if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    return "".join(kept).strip()


def find_denied(text: str, deny_list: Sequence[str]) -> str | None:
    """The first deny-list term (in list order) that occurs in `text` as whole words, case-insensitively."""
    low = text.casefold()
    for term in deny_list:
        t = term.strip().casefold()
        if not t:
            continue
        if re.search(r"(?<!\w)" + re.escape(t) + r"(?!\w)", low):
            return term.strip()
    return None


def sanitize_prompt(
    text: str, *, max_len: int = 2000, deny_list: Sequence[str] = (), what: str = "prompt"
) -> str:
    """Cleaned text, or `InvalidInput` naming the problem (empty, too long, or the denied term)."""
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be text")
    clean = strip_control(text)
    # a user must not be able to open a template section of their own
    clean = re.sub(r"\[(?=(?:" + "|".join(SECTION_NAMES) + r")\])", "(", clean)
    if not clean:
        raise InvalidInput(f"{what} is empty")
    if len(clean) > max_len:
        raise InvalidInput(f"{what} is {len(clean)} characters long, the limit is {max_len}")
    term = find_denied(clean, deny_list)
    if term is not None:
        raise InvalidInput(f"{what} contains the denied term '{term}'", details={"term": term})
    return clean
