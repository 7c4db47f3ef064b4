"""Prompt moderation, before a job is queued. The shipped policy refuses three categories:

- `sexual_minors`: sexual or sexualised content together with anything that makes a person a minor;
- `sexual_real_person`: explicit sexual content or nudity. Every IDLock character is made from photos of a real
  person, so explicit content of a character is always explicit content of a real person;
- `non_consensual`: intimate imagery without consent (undressing someone, hidden cameras, leaks, "revenge").

Operators add categories or phrases with a file (`IDLOCK_MODERATION_TERMS_PATH`, lines `category: phrase`).
Matching runs on a normalised text (lower case, accents folded, digits and symbols read as the letters they stand
for, letters spelt out with separators joined again), by whole words and phrases, and a few innocent uses are
exempt ("a naked blade", "strips the bark"). This is a word policy, not a classifier: it catches the plain ways of
asking, and says which category refused the prompt (never echoing the prompt).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from idlock.errors import InvalidInput
from idlock.settings import IdlockSettings

CATEGORIES = {
    "sexual_minors": "sexual content involving minors",
    "sexual_real_person": "sexual content of a real person's character",
    "non_consensual": "non-consensual intimate imagery",
}

# fmt: off
#: explicit sexual content and nudity
EXPLICIT = (
    "nude", "nudes", "nudity", "naked", "nsfw", "porn", "porno", "pornographic", "pornography", "sex", "sexual",
    "sexually", "intercourse", "erotic", "erotica", "explicit", "xxx", "hentai", "topless", "bottomless",
    "genitals", "genitalia", "penis", "vagina", "nipples", "orgasm", "masturbating", "masturbation", "blowjob",
    "striptease", "stripper", "strips naked", "fully undressed", "no clothes", "without clothes",
    "without any clothes", "wearing nothing", "onlyfans",
)
#: sexualised without being explicit: refused with a minor
SEXUALISED = (
    "sexy", "seductive", "sensual", "lingerie", "provocative", "lewd", "bikini", "underwear", "suggestive",
    "flirty", "kissing", "in bed with", "bedroom eyes",
)
#: what makes the person in the scene a minor
MINORS = (
    "child", "children", "kid", "kids", "minor", "underage", "under age", "teen", "teens", "teenage",
    "teenager", "preteen", "pre teen", "schoolgirl", "schoolboy", "school girl", "school boy", "loli", "lolita",
    "shota", "toddler", "infant", "baby", "little girl", "little boy", "young girl", "young boy", "juvenile",
    "pubescent", "prepubescent",
)
#: intimate imagery made or shared without consent
NON_CONSENSUAL = (
    "without her consent", "without his consent", "without their consent", "without consent",
    "non consensual", "nonconsensual", "revenge porn", "hidden camera", "spy camera", "spycam", "upskirt",
    "downblouse", "voyeur", "voyeurism", "leaked nudes", "leaked photos", "undress her", "undress him",
    "undress them", "undressing her", "undressing him", "remove her clothes", "remove his clothes",
    "take off her clothes", "take off his clothes", "rip off her clothes", "deepfake nude", "nudify",
    "drugged", "passed out and",
)
#: innocent uses of a refused word
EXEMPT = (
    "naked blade", "naked sword", "naked steel", "naked eye", "naked flame", "naked truth", "naked branches",
    "naked tree", "naked trees", "explicit instructions", "explicit permission", "sex of the", "baby dragon",
    "baby dragons", "kid gloves", "kissing the ring", "kissing her hand", "kissing his hand", "child of the",
    "children of the",
)
# fmt: on
_AGE = re.compile(r"\b(\d{1,2})\s*(?:years?\s*old|yo|yrs?\s*old|year old)\b")
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"}
)
_SPELT = re.compile(r"\b(?:[a-z][\s.\-_*]){2,}[a-z]\b")  # n.u.d.e, s e x


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def normalise(text: str) -> str:
    """Lower case, accents folded, letters spelt out joined, symbols and digits within words read as letters,
    everything else a single space."""
    folded = _SPELT.sub(lambda m: re.sub(r"[\s.\-_*]", "", m.group(0)), _fold(text))
    words = []
    for word in re.split(r"\s+", folded):
        if any(c.isalpha() for c in word):  # "s3x", "p0rn" (a bare number stays a number)
            word = word.translate(_LEET)
        words.append(re.sub(r"[^a-z0-9]+", " ", word))
    return " " + " ".join(" ".join(words).split()) + " "


def _has(text: str, phrases: Iterable[str]) -> bool:
    return any(f" {p} " in text for p in phrases)


@dataclass(frozen=True)
class Verdict:
    category: str = ""
    #: what the category means, for the error message
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return not self.category


class ModerationSettings(IdlockSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_MODERATION_")
    component: ClassVar[str] = "moderation"

    enabled: bool = Field(True, description="Check prompts before a job is queued (the shipped word policy).")
    terms_path: Path | None = Field(
        None,
        description="Operator additions: a text file of `category: phrase` lines (# comments); a new category "
        "refuses its phrases, an existing one gains them.",
    )


@dataclass
class PromptPolicy:
    explicit: tuple[str, ...] = EXPLICIT
    sexualised: tuple[str, ...] = SEXUALISED
    minors: tuple[str, ...] = MINORS
    non_consensual: tuple[str, ...] = NON_CONSENSUAL
    exempt: tuple[str, ...] = EXEMPT
    #: operator categories: name -> phrases (normalised)
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    enabled: bool = True

    _SHIPPED: ClassVar[dict[str, str]] = {
        "sexual_minors": "minors",
        "sexual_real_person": "explicit",
        "non_consensual": "non_consensual",
    }

    @classmethod
    def from_settings(cls, settings: ModerationSettings | None = None) -> PromptPolicy:
        s = settings or ModerationSettings()
        policy = cls(enabled=s.enabled)
        if s.terms_path is not None:
            policy.add_terms(read_terms(s.terms_path))
        return policy

    def add_terms(self, terms: dict[str, list[str]]) -> None:
        for category, phrases in terms.items():
            clean = tuple(normalise(p).strip() for p in phrases if normalise(p).strip())
            attr = self._SHIPPED.get(category)
            if attr is not None:
                setattr(self, attr, (*getattr(self, attr), *clean))
            else:
                self.extra[category] = (*self.extra.get(category, ()), *clean)

    def check(self, *texts: str) -> Verdict:
        """The first category the texts fall under (all of them read as one), or an allowed verdict."""
        if not self.enabled:
            return Verdict()
        joined = " . ".join(t for t in texts if t)
        text = normalise(joined)
        for phrase in self.exempt:
            text = text.replace(f" {phrase} ", " . ")
        young = _has(text, self.minors) or any(int(m.group(1)) < 18 for m in _AGE.finditer(_fold(joined)))
        explicit = _has(text, self.explicit)
        if young and (explicit or _has(text, self.sexualised)):
            return _verdict("sexual_minors")
        if _has(text, self.non_consensual):
            return _verdict("non_consensual")
        if explicit:
            return _verdict("sexual_real_person")
        for category, phrases in self.extra.items():
            if _has(text, phrases):
                return Verdict(category, f"the operator's list '{category}'")
        return Verdict()


def _verdict(category: str) -> Verdict:
    return Verdict(category, CATEGORIES[category])


def read_terms(path: Path) -> dict[str, list[str]]:
    """`category: phrase` lines; a clear error names the line that is not one."""
    terms: dict[str, list[str]] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InvalidInput(f"IDLOCK_MODERATION_TERMS_PATH: cannot read {path}: {e.strerror}") from e
    for n, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        category, sep, phrase = line.partition(":")
        category, phrase = category.strip(), phrase.strip()
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", category) or not phrase:
            raise InvalidInput(
                f"IDLOCK_MODERATION_TERMS_PATH line {n}: expected 'category: phrase' with a lower-case category"
            )
        terms.setdefault(category, []).append(phrase)
    return terms


class PromptRefused(InvalidInput):
    """A prompt the policy refuses; `category` names why (the prompt itself is never repeated)."""

    reason = "prompt_refused"

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(
            f"prompt refused: {verdict.reason} ({verdict.category})",
            details={"category": verdict.category},
        )
        self.category = verdict.category


def check_prompt(policy: PromptPolicy, *texts: str) -> None:
    verdict = policy.check(*texts)
    if not verdict.allowed:
        raise PromptRefused(verdict)


__all__ = [
    "CATEGORIES",
    "ModerationSettings",
    "PromptPolicy",
    "PromptRefused",
    "Verdict",
    "check_prompt",
    "normalise",
    "read_terms",
]
