"""Deterministic prompt template (seed §7); the sanitising of prompt text is `idlock.text`.

Same inputs -> byte-identical output: every collection is ordered, nothing depends on time, locale or hash seeds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from idlock.text import SECTION_NAMES, find_denied, sanitize_prompt, strip_control  # noqa: F401 (re-exported)

from .state import Interval, StoryState

MANDATORY_NEGATIVE_TOKENS: tuple[str, ...] = (
    "changing face",
    "morphing identity",
    "different clothes",
    "watermark",
    "text",
    "extra limbs",
    "distorted eyes",
)
FACE_LOCK = "-- do not alter facial proportions, eye color, or placement"
CONSTRAINT_LINES: tuple[str, ...] = (
    "Never change facial structure or eye color.",
    "Do not merge identity with background characters.",
)
DEFAULT_STYLE_GUIDE = (
    "Photorealistic, natural lighting, consistent character identity across scenes, sharp facial detail."
)
DEFAULT_OUTPUT_SPEC = "one photorealistic image, 1024x1024"


# ---- inputs ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CharacterSheet:
    name: str
    face_description: str = ""
    hair: str = ""
    eyes: str = ""
    distinctive_marks: tuple[str, ...] = ()
    semantic_tags: tuple[str, ...] = ()
    must_keep: tuple[str, ...] = ()
    #: who the character is, in the owner's words (the character's description)
    description: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> CharacterSheet:
        def tup(v: object) -> tuple[str, ...]:
            if v is None:
                return ()
            if isinstance(v, str):
                return (v,) if v.strip() else ()
            return tuple(str(x) for x in v)  # type: ignore[union-attr]

        return cls(
            name=str(d.get("name", "") or ""),
            face_description=str(d.get("face_description", d.get("face", "")) or ""),
            hair=str(d.get("hair", "") or ""),
            eyes=str(d.get("eyes", d.get("eye_color", "")) or ""),
            distinctive_marks=tup(d.get("distinctive_marks", d.get("distinctives"))),
            semantic_tags=tup(d.get("semantic_tags", d.get("tags"))),
            must_keep=tup(d.get("must_keep", d.get("must_keep_traits"))),
            description=str(d.get("description", "") or ""),
        )

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class SceneLine:
    scene_index: int
    text: str


@dataclass(frozen=True)
class StyleOverrides:
    """Per-request changes: another style guide, style notes, extra negative tokens, another output spec."""

    style_guide: str | None = None
    extra_negative_tokens: tuple[str, ...] = ()
    output_spec: str | None = None
    #: free-form style directives added to the style guide and repeated in the constraints
    style_notes: tuple[str, ...] = ()

    @classmethod
    def from_strings(cls, items: Sequence[str]) -> StyleOverrides:
        """From the proto's `repeated string style_overrides`: "negative: blur" adds a negative token,
        "output: one image, 16:9" sets the output spec, "style: watercolour" replaces the style guide, and
        anything else is a style note. Blank entries are ignored; order is kept."""
        neg: list[str] = []
        notes: list[str] = []
        guide: str | None = None
        output: str | None = None
        for raw in items:
            item = strip_control(raw)
            if not item:
                continue
            head, sep, rest = item.partition(":")
            h = head.strip().casefold()
            if sep and h in ("negative", "neg", "negative_tokens", "negative tokens"):
                neg.extend(x.strip() for x in rest.split(",") if x.strip())
            elif sep and h in ("output", "output_spec"):
                output = rest.strip() or None
            elif sep and h in ("style", "style_guide"):
                guide = rest.strip() or None
            else:
                notes.append(item)
        return cls(guide, tuple(neg), output, tuple(notes))

    def texts(self) -> list[str]:
        """Every user-supplied text in the overrides (for sanitisation)."""
        return [
            x
            for x in (self.style_guide, self.output_spec, *self.extra_negative_tokens, *self.style_notes)
            if x
        ]

    def digest(self) -> str:
        return _sha(json.dumps(asdict(self), sort_keys=True, ensure_ascii=True))


@dataclass(frozen=True)
class PromptInputs:
    sheet: CharacterSheet
    user_prompt: str
    state: StoryState | None = None
    recent_scenes: tuple[SceneLine, ...] = ()  # newest first
    relevant_scenes: tuple[SceneLine, ...] = ()
    summary: str = ""
    style_guide: str = DEFAULT_STYLE_GUIDE
    overrides: StyleOverrides = field(default_factory=StyleOverrides)
    #: how many recent scene lines the RECENT_STATE section lists
    max_recent: int = 3
    #: "no longer present" lists attributes ended in the last this-many scenes
    ended_window: int = 3

    def recently_ended(self) -> list[Interval]:
        """Attributes ended in the last `ended_window` scenes and not valid now."""
        st = self.state
        if st is None or st.last_scene is None:
            return []
        return st.ended_since(st.last_scene - max(self.ended_window, 1) + 1)


@dataclass(frozen=True)
class ComposedPrompt:
    prompt: str
    negative_prompt: str
    engine: Literal["template", "llm"] = "template"
    fallback_reason: str | None = None
    sections: Mapping[str, str] = field(default_factory=dict)
    cache_hit: bool = False
    #: sha256 of the template prompt: identifies the inputs the result was made from
    template_hash: str = ""

    def to_json(self) -> str:
        d = asdict(self)
        d["sections"] = dict(self.sections)
        return json.dumps(d, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str | bytes) -> ComposedPrompt:
        d = json.loads(s)
        return cls(**d)


def _sha(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def negative_tokens(overrides: StyleOverrides | None = None) -> tuple[str, ...]:
    """Mandatory tokens first, then the overrides' extra ones; duplicates (case-insensitive) dropped."""
    out: list[str] = []
    seen: set[str] = set()
    for t in MANDATORY_NEGATIVE_TOKENS + tuple((overrides or StyleOverrides()).extra_negative_tokens):
        c = strip_control(t)
        if c and c.casefold() not in seen:
            seen.add(c.casefold())
            out.append(c)
    return tuple(out)


#: the most of a character's description the prompt carries (the sheet's fields say what must not drift)
DESCRIPTION_MAX_CHARS = 600


def _shorten(s: str, most: int) -> str:
    return s if len(s) <= most else s[: most - 1].rstrip() + "…"


def _clean(s: str) -> str:
    return strip_control(s)


def _join(items: Sequence[str], sep: str) -> str:
    vals = [_clean(x) for x in items if _clean(x)]
    return sep.join(vals) if vals else "none"


def render_sections(inp: PromptInputs) -> dict[str, str]:
    ov = inp.overrides
    sheet = inp.sheet
    style = _clean(ov.style_guide if ov.style_guide is not None else inp.style_guide) or DEFAULT_STYLE_GUIDE
    if ov.style_notes:
        style += "\nStyle overrides: " + _join(ov.style_notes, "; ")

    face = _clean(sheet.face_description) or "as in the reference images"
    cs = [
        f"Name: {_clean(sheet.name) or 'unnamed'}",
        *(
            [f"About: {_shorten(_clean(sheet.description), DESCRIPTION_MAX_CHARS)}"]
            if _clean(sheet.description)
            else []
        ),
        f"Face: {face} {FACE_LOCK}",
        f"Hair: {_clean(sheet.hair) or 'as in the reference images'}",
        f"Eyes: {_clean(sheet.eyes) or 'as in the reference images'}",
        f"Distinctives: {_join(sheet.distinctive_marks, '; ')}",
        f"SemanticTags: {_join(sheet.semantic_tags, ', ')}",
        f"MustKeep: {_join(sheet.must_keep, '; ')}",
    ]

    rs: list[str] = []
    st = inp.state
    if st is not None and st.last_scene is not None:
        rs.append(f"Current state (after scene {st.last_scene}):")
        by = st.by_category()
        any_item = False
        for cat, items in by.items():
            if items:
                any_item = True
                rs.append(
                    f"- {cat}: "
                    + "; ".join(f"{_clean(i.label)} (since scene {i.since_scene})" for i in items)
                )
        if not any_item:
            rs.append("- nothing recorded")
        ended = inp.recently_ended()
        if ended:
            rs.append(
                "No longer present: "
                + "; ".join(f"{iv.name} ({iv.category}, ended in scene {iv.end_scene})" for iv in ended)
            )
    else:
        rs.append("Current state: first scene, nothing recorded yet")
    recent = sorted(inp.recent_scenes, key=lambda s: -s.scene_index)[: max(inp.max_recent, 0)]
    if recent:
        rs.append("Recent scenes (newest first):")
        rs.extend(f"- Scene {s.scene_index}: {_clean(s.text)}" for s in recent)
    recent_idx = {s.scene_index for s in recent}
    relevant = [
        s for s in sorted(inp.relevant_scenes, key=lambda s: s.scene_index) if s.scene_index not in recent_idx
    ]
    if relevant:
        rs.append("Relevant earlier scenes:")
        rs.extend(f"- Scene {s.scene_index}: {_clean(s.text)}" for s in relevant)
    if _clean(inp.summary):
        rs.append(f"Story so far: {_clean(inp.summary)}")

    neg = negative_tokens(ov)
    cons = [f"- {c}" for c in CONSTRAINT_LINES]
    if sheet.must_keep:
        cons.append(f"- Keep these traits: {_join(sheet.must_keep, '; ')}.")
    if ov.style_notes:
        cons.append(f"- Follow the style overrides: {_join(ov.style_notes, '; ')}.")
    cons.append(f"- Negative tokens: {', '.join(neg)}")
    cons.append(f"- Final output: {_clean(ov.output_spec or '') or DEFAULT_OUTPUT_SPEC}")

    return {
        "MASTER_STYLE_GUIDE": style,
        "CHARACTER_SHEET": "\n".join(cs),
        "RECENT_STATE": "\n".join(rs),
        "USER_SCENE": _clean(inp.user_prompt),
        "CONSTRAINTS": "\n".join(cons),
    }


def compose_template(inp: PromptInputs) -> ComposedPrompt:
    """The deterministic template prompt. `inp.user_prompt` must already be sanitised (`sanitize_prompt`)."""
    sections = render_sections(inp)
    text = "\n\n".join(f"[{name}]\n{sections[name]}" for name in SECTION_NAMES) + "\n"
    return ComposedPrompt(
        prompt=text,
        negative_prompt=", ".join(negative_tokens(inp.overrides)),
        engine="template",
        fallback_reason=None,
        sections=sections,
        template_hash=_sha(text),
    )


# ---- scenes with several characters (issue #23) -------------------------------------------------------------


@dataclass(frozen=True)
class CastInput:
    """One character of a scene with several: its sheet, its role in the owner's words, its own story state."""

    sheet: CharacterSheet
    role: str = ""
    state: StoryState | None = None
    recent_scenes: tuple[SceneLine, ...] = ()
    ended: tuple[Interval, ...] = ()


#: what a scene of several must not do, on top of one character's constraints
CAST_CONSTRAINTS: tuple[str, ...] = (
    "Each person keeps their own face from their own reference images; never merge or swap two identities.",
    "Each person keeps their own clothing, injuries and props; never give one person's items to another.",
)
CAST_NEGATIVE_TOKENS: tuple[str, ...] = ("merged faces", "swapped faces", "identical twins")
#: items of a character that stay with that character (the setting is the scene's, shared)
OWN_CATEGORIES = ("clothing", "injuries", "props", "mood")


def _cast_sheet(k: int, member: CastInput) -> list[str]:
    sheet = member.sheet
    head = f"Person {k}: {_clean(sheet.name) or 'unnamed'}"
    if _clean(member.role):
        head += f" ({_clean(member.role)})"
    lines = [head]
    if _clean(sheet.description):
        lines.append(f"  About: {_shorten(_clean(sheet.description), DESCRIPTION_MAX_CHARS // 2)}")
    lines += [
        f"  Face: {_clean(sheet.face_description) or 'as in their reference images'} {FACE_LOCK}",
        f"  Hair: {_clean(sheet.hair) or 'as in their reference images'}",
        f"  Eyes: {_clean(sheet.eyes) or 'as in their reference images'}",
        f"  Distinctives: {_join(sheet.distinctive_marks, '; ')}",
        f"  MustKeep: {_join(sheet.must_keep, '; ')}",
    ]
    return lines


def _cast_state(member: CastInput) -> list[str]:
    name = _clean(member.sheet.name) or "unnamed"
    st = member.state
    if st is None or st.last_scene is None:
        return [f"{name}: first scene, nothing recorded yet"]
    own = [
        f"{cat}: " + "; ".join(_clean(i.label) for i in items)
        for cat, items in st.by_category().items()
        if cat in OWN_CATEGORIES and items
    ]
    out = [f"{name} now (after their scene {st.last_scene}): " + (" | ".join(own) or "nothing recorded")]
    if member.ended:
        out.append(
            f"  {name} no longer has: " + "; ".join(f"{iv.name} ({iv.category})" for iv in member.ended)
        )
    out += [f"  {name}, scene {s.scene_index}: {_clean(s.text)}" for s in member.recent_scenes[:2]]
    return out


def compose_cast_template(
    members: Sequence[CastInput],
    user_prompt: str,
    overrides: StyleOverrides | None = None,
    style_guide: str = DEFAULT_STYLE_GUIDE,
) -> ComposedPrompt:
    """The deterministic prompt of a scene with several characters: each one's sheet and own state kept apart
    under its name and role, the setting shared (the first character's, unless the scene names one).
    `user_prompt` must already be sanitised."""
    ov = overrides or StyleOverrides()
    style = _clean(ov.style_guide if ov.style_guide is not None else style_guide) or DEFAULT_STYLE_GUIDE
    if ov.style_notes:
        style += "\nStyle overrides: " + _join(ov.style_notes, "; ")
    sheets: list[str] = [f"{len(members)} different people, each shown once:"]
    for k, member in enumerate(members, start=1):
        sheets += _cast_sheet(k, member)
    states: list[str] = []
    for member in members:
        states += _cast_state(member)
    setting = next(
        (
            [i.label for i in m.state.by_category().get("setting", [])]
            for m in members
            if m.state is not None and m.state.by_category().get("setting")
        ),
        [],
    )
    if setting:
        states.append(
            "Shared setting (unless the scene says otherwise): " + "; ".join(_clean(s) for s in setting)
        )
    neg = tuple(dict.fromkeys(negative_tokens(ov) + CAST_NEGATIVE_TOKENS))
    cons = [f"- {c}" for c in (*CONSTRAINT_LINES, *CAST_CONSTRAINTS)]
    for member in members:
        if member.sheet.must_keep:
            cons.append(f"- {_clean(member.sheet.name)} keeps: {_join(member.sheet.must_keep, '; ')}.")
    if ov.style_notes:
        cons.append(f"- Follow the style overrides: {_join(ov.style_notes, '; ')}.")
    cons.append(f"- Negative tokens: {', '.join(neg)}")
    cons.append(f"- Final output: {_clean(ov.output_spec or '') or DEFAULT_OUTPUT_SPEC}")
    sections = {
        "MASTER_STYLE_GUIDE": style,
        "CHARACTER_SHEET": "\n".join(sheets),
        "RECENT_STATE": "\n".join(states),
        "USER_SCENE": _clean(user_prompt),
        "CONSTRAINTS": "\n".join(cons),
    }
    text = "\n\n".join(f"[{name}]\n{sections[name]}" for name in SECTION_NAMES) + "\n"
    return ComposedPrompt(
        prompt=text,
        negative_prompt=", ".join(neg),
        engine="template",
        sections=sections,
        template_hash=_sha(text),
    )
