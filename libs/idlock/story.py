"""The story-state vocabulary every service shares: the categories of discrete state (clothing, injuries, props,
setting, mood), canonical attribute names ("Armor" and "the armours" are one item), and the removal phrases a
scene's text may hold ("takes off the armour", "the wound healed"). Memory folds scenes with it; the orchestrator's
heuristic state extractor tags scenes with it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

CATEGORIES: tuple[str, ...] = ("clothing", "injuries", "props", "setting", "mood")
#: categories that hold a single value: a newly added value ends the previous one
EXCLUSIVE: frozenset[str] = frozenset({"setting", "mood"})
#: category of a removal whose category is not known (heuristic removals): matched against every category
ANY = "*"

_SPELLING = {
    "armor": "armour",
    "armored": "armoured",
    "color": "colour",
    "colored": "coloured",
    "gray": "grey",
    "jewelry": "jewellery",
    "pajamas": "pyjamas",
    "favorite": "favourite",
    "mustache": "moustache",
    "theater": "theatre",
    "center": "centre",
}
_ARTICLES = frozenset(
    {"the", "a", "an", "his", "her", "their", "its", "my", "your", "our", "some", "this", "that"}
)
# words that are plural in form but name one thing
_PLURALIA = frozenset(
    {
        "trousers",
        "pants",
        "jeans",
        "shorts",
        "glasses",
        "spectacles",
        "goggles",
        "scissors",
        "tights",
        "leggings",
        "pyjamas",
        "clothes",
        "news",
        "overalls",
        "binoculars",
        "tongs",
        "sunglasses",
    }
)
_IRREGULAR = {
    "knives": "knife",
    "wolves": "wolf",
    "leaves": "leaf",
    "scarves": "scarf",
    "teeth": "tooth",
    "feet": "foot",
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "gloves": "glove",
    "sleeves": "sleeve",
    "shelves": "shelf",
    "halves": "half",
    "lives": "life",
}


def _singular(word: str) -> str:
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word in _PLURALIA or len(word) <= 3:
        return word
    if word.endswith(("ss", "us", "is", "ous")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "zes", "sses")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def normalize_name(name: str) -> str:
    """Canonical form of an attribute name: case-folded, British spelling, no leading article, singular words.

    "The Armor" -> "armour", "Swords" -> "sword", "cuts on left cheek" -> "cut on left cheek".
    """
    s = unicodedata.normalize("NFKC", name).casefold()
    s = s.replace("_", " ").replace("-", " ")
    s = re.sub(r"[^\w\s']", " ", s)
    words = s.split()
    while words and words[0] in _ARTICLES:
        words = words[1:]
    out = []
    for w in words:
        w = _SPELLING.get(w, w)
        w = _SPELLING.get(_singular(w), _singular(w))
        out.append(w)
    return " ".join(out)


@dataclass(frozen=True)
class Removal:
    name: str  # canonical
    category: str = ANY  # ANY: match every category
    #: remove every item of the category (e.g. "heals" with no object -> every injury)
    all_of_category: bool = False
    #: words after the head ("wound on his cheek" -> ("cheek",)): narrow a generic head to items naming them
    context: tuple[str, ...] = ()


def clean_label(name: str) -> str:
    s = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", name)).strip()
    words = s.split(" ")
    while words and words[0].casefold() in _ARTICLES:
        words = words[1:]
    return " ".join(words)


def matches(removal_name: str, item_name: str, context: tuple[str, ...] = (), category: str = "") -> bool:
    """A removal names an item when equal, or when all its words occur in the item's name ("cut" ~ "cut on cheek").

    A generic injury word ("wound", "injury") names any injury, narrowed by its context words when it has some.
    """
    if removal_name == item_name:
        return True
    rw = removal_name.split()
    iw = set(item_name.split())
    if bool(rw) and all(w in iw for w in rw):
        return True
    if category == "injuries" and removal_name in _GENERIC_INJURY:
        return not context or any(c in iw for c in context)
    return False


# ---- removal heuristic -----------------------------------------------------------------------------------------

_DET = r"(?:(?:the|his|her|their|its|a|an|my|your|our)\s+)?"
_OBJ = r"([a-z][a-z' -]{0,60}?)"
_STOP = r"(?=$|[.,;:!?]|\s(?:and\s+(?:then|walks|runs|goes|turns|looks|sits|stands)\b|then|but|while|before|after|as|because|so|to|into|onto|on\s+the\s+(?:floor|ground|table)|at|from|in\s+the|with)\b)"
_REMOVE_VERBS = (
    r"(?:takes|took|taking|take)\s+off",
    r"(?:strips|stripped|stripping|strip)\s+off",
    r"(?:removes|removed|removing|remove)",
    r"(?:drops|dropped|dropping|drop)",
    r"(?:loses|lost|losing|lose)",
    r"(?:discards|discarded|discarding|discard)",
    r"(?:sheds|shedding|shed)",
    r"(?:throws|threw|throwing|throw)\s+(?:away|down)",
    r"(?:puts|put|putting)\s+down",
    r"(?:sets|set|setting)\s+down",
    r"(?:casts|cast|casting)\s+(?:off|aside|away)",
    r"(?:gives|gave|giving|give)\s+away",
    r"(?:unequips|unequipped|unequip)",
    r"(?:no\s+longer\s+(?:wears|wearing|carries|carrying|has|holds|holding))",
    r"(?:without)",
)
_VERB_OBJ_RE = re.compile(r"\b(?:" + "|".join(_REMOVE_VERBS) + r")\s+" + _DET + _OBJ + _STOP)
# "takes the armour off"
_VERB_OBJ_OFF_RE = re.compile(
    r"\b(?:takes|took|taking|take|strips|stripped|pulls|pulled)\s+" + _DET + r"([a-z][a-z' -]{0,40}?)\s+off\b"
)
_HEAL_VERB_RE = re.compile(
    r"\b(?:has\s+|have\s+|had\s+|is\s+|are\s+|was\s+|were\s+)?(?:been\s+)?"
    r"(?:healed|heals|heal|faded|fades|fade|vanished|disappeared|closed|is\s+gone|are\s+gone)\b"
)
# "heals the cut", "healed his wounds"
_HEAL_OBJ_RE = re.compile(
    r"\b(?:heals|healed|healing|heal|cures|cured|cure|treats|treated)\s+" + _DET + _OBJ + _STOP
)
_HEAL_ANY_RE = re.compile(r"\b(?:heals|healed|healing|heal|fully\s+recovered|recovers|recovered)\b")
_GENERIC_INJURY = frozenset({"wound", "injury", "injurie", "hurt"})
_INJURY_WORDS = _GENERIC_INJURY | frozenset(
    {
        "cut",
        "gash",
        "bruise",
        "scratch",
        "burn",
        "laceration",
        "graze",
        "fracture",
        "broken",
        "bleeding",
        "blood",
        "bite",
        "sprain",
        "stab",
        "welt",
        "scrape",
        "black",
        "swelling",
        "swollen",
        "bandage",
        "bandaged",
        "limp",
        "slash",
        "puncture",
        "blister",
        "sling",
        "cast",
    }
)
_PREPOSITIONS = frozenset(
    {"on", "of", "in", "at", "from", "across", "over", "under", "near", "by", "with", "above", "below"}
)
_FILLER = _ARTICLES | frozenset(
    {"he", "she", "they", "him", "them", "it", "who", "which", "that", "then", "now"}
)
_OBJ_PRONOUNS = frozenset({"it", "them", "him", "her", "everything", "all", "off", "away", "up", "down"})
_NEGATION_RE = re.compile(
    r"\b(?:not|never|no|n't|doesn't|don't|didn't|won't|refuses\s+to|without)\s+(?:\w+\s+){0,2}$"
)
_SUBJ_STOP = frozenset(
    {"he", "she", "they", "it", "who", "which", "that", "and", "then", "knight", "character"}
)


def _head_and_context(phrase: str) -> tuple[str, tuple[str, ...]]:
    """ "the wound on his cheek" -> ("wound", ("cheek",)); "left boot" -> ("left boot", ())."""
    words = normalize_name(phrase).split()
    head: list[str] = []
    rest: list[str] = []
    for i, w in enumerate(words):
        if w in _PREPOSITIONS and head:
            rest = words[i + 1 :]
            break
        if w in _ARTICLES:
            head = []  # "weeks later the wound" -> the noun phrase starts after its determiner
        elif w not in _FILLER:
            head.append(w)
    ctx = tuple(w for w in rest if w not in _FILLER and w not in _PREPOSITIONS)
    return " ".join(head[-3:]), ctx


def _split_objects(obj: str) -> list[tuple[str, tuple[str, ...]]]:
    parts = re.split(r"\s*,\s*|\s+and\s+|\s+or\s+", obj.strip())
    out = []
    for p in parts:
        head, ctx = _head_and_context(p)
        if head and head not in _OBJ_PRONOUNS:
            out.append((head, ctx))
    return out


def _injury_like(head: str) -> bool:
    return any(w in _INJURY_WORDS for w in head.split())


def infer_removals(text: str) -> list[Removal]:
    """Removals named by phrases in a scene's text ("removes the armour", "takes off", "heals", "drops", "loses").

    A labelled heuristic, not a parser: it only ever ends attributes that hold, so a false positive that names
    nothing current does no harm. Negated phrases ("never drops the sword") are ignored.
    """
    t = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'")
    out: list[Removal] = []
    seen: set[tuple[str, str, bool]] = set()

    def add(r: Removal) -> None:
        k = (r.name, r.category, r.all_of_category)
        if k not in seen:
            seen.add(k)
            out.append(r)

    def negated(pos: int) -> bool:
        return bool(_NEGATION_RE.search(t[max(0, pos - 40) : pos]))

    for rx in (_VERB_OBJ_RE, _VERB_OBJ_OFF_RE):
        for m in rx.finditer(t):
            if negated(m.start()) and not m.group(0).startswith("without"):
                continue
            for head, ctx in _split_objects(m.group(1)):
                add(Removal(head, ANY, False, ctx))
    healed_named = False
    for m in _HEAL_VERB_RE.finditer(t):
        # the subject: the clause right before the verb ("the wound on his cheek healed")
        before = re.split(
            r"[.,;:!?]|\b(?:and|then|but|while|as|so)\b", t[max(0, m.start() - 80) : m.start()]
        )[-1]
        if not before.strip() or negated(m.start()):
            continue
        head, ctx = _head_and_context(before)
        if head and _injury_like(head):
            add(Removal(head, "injuries", False, ctx))
            healed_named = True
    for m in _HEAL_OBJ_RE.finditer(t):
        if negated(m.start()):
            continue
        for head, ctx in _split_objects(m.group(1)):
            if _injury_like(head):
                add(Removal(head, "injuries", False, ctx))
                healed_named = True
    if not healed_named:
        for m in _HEAL_ANY_RE.finditer(t):
            if not negated(m.start()):
                add(Removal("*", "injuries", all_of_category=True))
                break
    return out
