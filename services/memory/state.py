"""Temporal story state: which discrete attributes hold now, and when each held.

Each attribute is a (category, canonical name) pair. It is valid from the scene that introduced it until a later
scene ends it ("took off the armour", "the wound healed", "dropped the sword"). `setting` and `mood` hold one value
at a time: a new one ends the previous. The other categories hold any number of values.

Input per scene: the extracted tags added and removed in that scene, plus the scene's text (prompt/description) from
which `infer_removals` reads removal phrases. Within one scene a removal wins over an addition of the same item.
"""

from __future__ import annotations

import re
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

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
class SceneTags:
    """The tags one scene added and removed (category -> names), and its text for the removal heuristic."""

    scene_index: int
    added: Mapping[str, Sequence[str]] = field(default_factory=dict)
    removed: Mapping[str, Sequence[str]] = field(default_factory=dict)
    text: str = ""


@dataclass(frozen=True)
class StateItem:
    category: str
    name: str  # canonical
    label: str  # as first written (cleaned), for prompts
    since_scene: int


@dataclass(frozen=True)
class Interval:
    """An attribute held from `start_scene` (inclusive) until `end_scene` (exclusive); None: still holds."""

    category: str
    name: str
    start_scene: int
    end_scene: int | None = None

    @property
    def open(self) -> bool:
        return self.end_scene is None


@dataclass(frozen=True)
class Removal:
    name: str  # canonical
    category: str = ANY  # ANY: match every category
    #: remove every item of the category (e.g. "heals" with no object -> every injury)
    all_of_category: bool = False
    #: words after the head ("wound on his cheek" -> ("cheek",)): narrow a generic head to items naming them
    context: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoryState:
    """Current state after the last scene, plus everything that ended, in a deterministic order."""

    items: tuple[StateItem, ...]
    intervals: tuple[Interval, ...]
    last_scene: int | None

    def by_category(self) -> dict[str, list[StateItem]]:
        out: dict[str, list[StateItem]] = {c: [] for c in CATEGORIES}
        for it in self.items:
            out.setdefault(it.category, []).append(it)
        return out

    def names(self, category: str | None = None) -> list[str]:
        return [it.name for it in self.items if category is None or it.category == category]

    def ended_since(self, scene_index: int) -> list[Interval]:
        """Attributes that ended at or after `scene_index` and are not valid now (for "no longer present")."""
        current = {(it.category, it.name) for it in self.items}
        seen: set[tuple[str, str]] = set()
        out: list[Interval] = []
        for iv in sorted(self.intervals, key=lambda i: (-(i.end_scene or 0), i.category, i.name)):
            key = (iv.category, iv.name)
            if iv.end_scene is None or iv.end_scene < scene_index or key in current or key in seen:
                continue
            seen.add(key)
            out.append(iv)
        return out

    def history(self, category: str, name: str) -> list[Interval]:
        return attribute_history_from(self.intervals, category, name)


def _clean_label(name: str) -> str:
    s = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", name)).strip()
    words = s.split(" ")
    while words and words[0].casefold() in _ARTICLES:
        words = words[1:]
    return " ".join(words)


def _matches(removal_name: str, item_name: str, context: tuple[str, ...] = (), category: str = "") -> bool:
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


class StateFold:
    """The story state replayed scene by scene: `add` the scenes in order, read `state()` at any point. Kept
    between calls, a long story only replays its new scenes."""

    def __init__(self, *, infer: bool = True) -> None:
        self.infer = infer
        self.last: int | None = None
        self._open: dict[tuple[str, str], StateItem] = {}
        self._ended: list[Interval] = []

    def _close(self, key: tuple[str, str], at: int) -> None:
        it = self._open.pop(key)
        self._ended.append(Interval(it.category, it.name, it.since_scene, at))

    def add(self, sc: SceneTags) -> None:
        """Apply the next scene (a scene at or before the last one applied is ignored: scenes only append)."""
        idx = sc.scene_index
        if self.last is not None and idx <= self.last:
            return
        self.last = idx
        open_ = self._open
        removals: list[Removal] = []
        for cat, names in sc.removed.items():
            for n in names:
                cn = normalize_name(n)
                if cn:
                    removals.append(Removal(cn, cat if cat else ANY))
        if self.infer and sc.text:
            removals.extend(infer_removals(sc.text))
        removed_now: set[tuple[str, str]] = set()
        for r in removals:
            for key in sorted(open_):
                cat, name = key
                if r.category not in (ANY, cat):
                    continue
                if r.all_of_category or _matches(r.name, name, r.context, cat):
                    removed_now.add(key)
                    self._close(key, idx)
            # a removal of something added in this same scene: remember it so the addition is skipped
            if r.category != ANY:
                removed_now.add((r.category, r.name))
            else:
                for c in CATEGORIES:
                    removed_now.add((c, r.name))
        for cat in sorted(sc.added):
            for n in sc.added[cat]:
                cn = normalize_name(n)
                if not cn:
                    continue
                key = (cat, cn)
                if key in removed_now or any(
                    _matches(r.name, cn) and r.category in (ANY, cat)
                    for r in removals
                    if not r.all_of_category
                ):
                    continue
                if key in open_:
                    continue  # still holds: keeps its original start
                if cat in EXCLUSIVE:
                    for other in [k for k in open_ if k[0] == cat]:
                        self._close(other, idx)
                open_[key] = StateItem(cat, cn, _clean_label(n) or cn, idx)

    def state(self) -> StoryState:
        order = {c: i for i, c in enumerate(CATEGORIES)}
        items = tuple(
            sorted(self._open.values(), key=lambda i: (order.get(i.category, 99), i.category, i.since_scene, i.name))
        )
        intervals = [*self._ended, *(Interval(it.category, it.name, it.since_scene, None) for it in items)]
        intervals.sort(key=lambda i: (order.get(i.category, 99), i.category, i.name, i.start_scene))
        return StoryState(items=items, intervals=tuple(intervals), last_scene=self.last)


class StateCache:
    """Each character's fold, kept between context builds so a long story replays only its new scenes (the least
    recently used characters are dropped)."""

    def __init__(self, max_characters: int = 1024) -> None:
        self.max_characters = max_characters
        self._folds: OrderedDict[str, StateFold] = OrderedDict()

    def fold(self, character_id: str, scene_count: int) -> StateFold:
        """The character's fold; a new one when there is none or it holds scenes the story no longer has."""
        fold = self._folds.get(character_id)
        if fold is None or (fold.last or 0) > scene_count:
            fold = self._folds[character_id] = StateFold()
        self._folds.move_to_end(character_id)
        while len(self._folds) > self.max_characters:
            self._folds.popitem(last=False)
        return fold

    def scenes_seen(self, character_id: str) -> int:
        """How many of the character's scenes are folded: a floor on its story's length (stories only grow, and
        an erased character is forgotten)."""
        fold = self._folds.get(character_id)
        return (fold.last or 0) if fold is not None else 0

    def forget(self, character_id: str) -> None:
        self._folds.pop(character_id, None)


def compute_state(scenes: Iterable[SceneTags], *, infer: bool = True) -> StoryState:
    """Replay the scenes in scene order. `infer`: also read removal phrases from each scene's text."""
    fold = StateFold(infer=infer)
    for sc in sorted(scenes, key=lambda s: s.scene_index):
        fold.add(sc)
    return fold.state()


def attribute_history_from(intervals: Iterable[Interval], category: str, name: str) -> list[Interval]:
    cn = normalize_name(name)
    return sorted(
        (iv for iv in intervals if iv.category == category and iv.name == cn), key=lambda i: i.start_scene
    )


def attribute_history(
    scenes: Iterable[SceneTags], category: str, name: str, *, infer: bool = True
) -> list[Interval]:
    """Every interval during which (category, name) held, oldest first."""
    return compute_state(scenes, infer=infer).history(category, name)


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
