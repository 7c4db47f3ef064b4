"""Temporal story state: which discrete attributes hold now, and when each held.

Each attribute is a (category, canonical name) pair. It is valid from the scene that introduced it until a later
scene ends it ("took off the armour", "the wound healed", "dropped the sword"). `setting` and `mood` hold one value
at a time: a new one ends the previous. The other categories hold any number of values.

Input per scene: the extracted tags added and removed in that scene, plus the scene's text (prompt/description) from
which `infer_removals` reads removal phrases. Within one scene a removal wins over an addition of the same item.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from idlock.story import (
    ANY,
    CATEGORIES,
    EXCLUSIVE,
    Removal,
    clean_label,
    infer_removals,
    matches,
    normalize_name,
)

#: categories in the order a state lists them (an unknown one last)
_CATEGORY_ORDER = {c: i for i, c in enumerate(CATEGORIES)}


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
class StoryState:
    """Current state after the last scene, plus everything that ended (`ended`: in the order the scenes ended them).

    A context reads the current items and what ended lately; the whole history (`intervals`, sorted) is built only
    when asked, so a long story's context does not sort every attribute it ever had."""

    items: tuple[StateItem, ...]
    ended: tuple[Interval, ...]
    last_scene: int | None

    @cached_property
    def intervals(self) -> tuple[Interval, ...]:
        """Every interval, ended and current, by category, name and start."""
        current = (Interval(it.category, it.name, it.since_scene, None) for it in self.items)
        return tuple(
            sorted(
                (*self.ended, *current),
                key=lambda i: (_CATEGORY_ORDER.get(i.category, 99), i.category, i.name, i.start_scene),
            )
        )

    def by_category(self) -> dict[str, list[StateItem]]:
        out: dict[str, list[StateItem]] = {c: [] for c in CATEGORIES}
        for it in self.items:
            out.setdefault(it.category, []).append(it)
        return out

    def names(self, category: str | None = None) -> list[str]:
        return [it.name for it in self.items if category is None or it.category == category]

    def ended_since(self, scene_index: int) -> list[Interval]:
        """Attributes that ended at or after `scene_index` and are not valid now (for "no longer present")."""
        lately: list[Interval] = []
        for iv in reversed(self.ended):  # latest end last: only the tail is read
            if (iv.end_scene or 0) < scene_index:
                break
            lately.append(iv)
        current = {(it.category, it.name) for it in self.items}
        seen: set[tuple[str, str]] = set()
        out: list[Interval] = []
        for iv in sorted(lately, key=lambda i: (-(i.end_scene or 0), i.category, i.name)):
            key = (iv.category, iv.name)
            if key in current or key in seen:
                continue
            seen.add(key)
            out.append(iv)
        return out

    def history(self, category: str, name: str) -> list[Interval]:
        return attribute_history_from(self.intervals, category, name)


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
                if r.all_of_category or matches(r.name, name, r.context, cat):
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
                    matches(r.name, cn) and r.category in (ANY, cat)
                    for r in removals
                    if not r.all_of_category
                ):
                    continue
                if key in open_:
                    continue  # still holds: keeps its original start
                if cat in EXCLUSIVE:
                    for other in [k for k in open_ if k[0] == cat]:
                        self._close(other, idx)
                open_[key] = StateItem(cat, cn, clean_label(n) or cn, idx)

    def to_dict(self) -> dict[str, Any]:
        """What `from_dict` reads back: the fold as plain JSON values."""
        return {
            "v": 1,
            "infer": self.infer,
            "last": self.last,
            "open": [[it.category, it.name, it.label, it.since_scene] for it in self._open.values()],
            "ended": [[iv.category, iv.name, iv.start_scene, iv.end_scene] for iv in self._ended],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StateFold:
        if data.get("v") != 1:
            raise ValueError(f"unknown story fold version {data.get('v')!r}")
        fold = cls(infer=bool(data["infer"]))
        fold.last = data["last"]
        for cat, name, label, since in data["open"]:
            fold._open[(cat, name)] = StateItem(cat, name, label, int(since))
        ended = [Interval(cat, name, int(start), int(end)) for cat, name, start, end in data["ended"]]
        # kept in end order (a stable sort keeps the order it was written in)
        fold._ended = sorted(ended, key=lambda i: i.end_scene or 0)
        return fold

    def state(self) -> StoryState:
        items = tuple(
            sorted(
                self._open.values(),
                key=lambda i: (_CATEGORY_ORDER.get(i.category, 99), i.category, i.since_scene, i.name),
            )
        )
        return StoryState(items=items, ended=tuple(self._ended), last_scene=self.last)


class StateCache:
    """Each character's fold, kept between context builds so a long story replays only its new scenes (the least
    recently used characters are dropped)."""

    def __init__(self, max_characters: int = 1024, store_every: int = 32) -> None:
        self.max_characters = max_characters
        #: a fold is due to be stored (`StoryFold`) once it is this many scenes past the stored one
        self.store_every = store_every
        self._folds: OrderedDict[str, StateFold] = OrderedDict()
        #: character -> the last scene of its stored fold (-1: none stored)
        self._stored: dict[str, int] = {}

    def adopt(self, character_id: str, fold: StateFold) -> StateFold:
        """Start the character from a stored fold."""
        self._folds[character_id] = fold
        self._stored[character_id] = fold.last or 0
        return fold

    def may_have_stored(self, scene_count: int) -> bool:
        """Whether a story this long can have a stored fold: none is stored before `store_every` scenes."""
        return scene_count >= self.store_every - 1

    def due(self, character_id: str) -> dict[str, Any] | None:
        """The character's fold as stored (`StateFold.to_dict`) when it is far enough past its stored copy to be
        stored again; it then counts as stored."""
        fold = self._folds.get(character_id)
        if fold is None or fold.last is None:
            return None
        if fold.last - self._stored.get(character_id, -1) < self.store_every:
            return None
        self._stored[character_id] = fold.last
        return fold.to_dict()

    def fold(self, character_id: str, scene_count: int) -> StateFold:
        """The character's fold; a new one when there is none or it holds scenes the story no longer has."""
        fold = self._folds.get(character_id)
        if fold is None or (fold.last or 0) > scene_count:
            fold = self._folds[character_id] = StateFold()
            self._stored.pop(character_id, None)
        self._folds.move_to_end(character_id)
        while len(self._folds) > self.max_characters:
            gone, _ = self._folds.popitem(last=False)
            self._stored.pop(gone, None)
        return fold

    def scenes_seen(self, character_id: str) -> int:
        """How many of the character's scenes are folded: a floor on its story's length (stories only grow, and
        an erased character is forgotten)."""
        fold = self._folds.get(character_id)
        return (fold.last or 0) if fold is not None else 0

    def forget(self, character_id: str) -> None:
        self._folds.pop(character_id, None)
        self._stored.pop(character_id, None)


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
