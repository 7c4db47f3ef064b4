"""State extraction: what a rendered scene shows (clothing, injuries, props, setting, mood) and what it ended.

With a Gemini key, a vision model reads the image through `google-genai` and answers in a fixed JSON schema
(`state_source = "vision:<model>"`). Without one, or when the model fails, a labelled keyword heuristic reads the
user's prompt (`state_source = "heuristic"`). Removals ("takes off the armour", "drops the sword", "the cut
healed") come from the memory service's own phrase reader, so both services agree on what a scene ended.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from idlock import metrics
from idlock.story import ANY, CATEGORIES, infer_removals, normalize_name

log = logging.getLogger("idlock.orchestrator.state")

HEURISTIC = "heuristic"

_MODIFIERS = (
    "red|blue|black|white|green|gold|golden|silver|grey|gray|brown|purple|yellow|orange|pink|dark|crimson|"
    "leather|steel|iron|chain|plate|wool|woollen|woolen|silk|velvet|fur|linen|denim|torn|muddy|bloody|"
    "tattered|old|new|long|short|heavy|light|hooded|wooden|broken|rusty|shiny|ornate|battered"
)


def _terms(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split("|") if t.strip())


VOCAB: dict[str, tuple[str, ...]] = {
    "clothing": _terms(
        "armour|armor|cloak|cape|dress|gown|jacket|coat|hoodie|t-shirt|shirt|tunic|robe|hat|"
        "helmet|crown|boots|shoes|sneakers|scarf|gloves|jeans|trousers|skirt|suit|tie|uniform|"
        "sunglasses|glasses|mask|hood|vest|sweater|apron|raincoat|overalls|pyjamas|pajamas|"
        "kimono|tiara|bandana"
    ),
    "injuries": _terms(
        "black eye|broken arm|broken leg|cut|gash|bruise|scar|scratch|burn|wound|bandage|sling|"
        "limp|bleeding|graze|laceration"
    ),
    "props": _terms(
        "sword|shield|bow|arrow|dagger|knife|staff|wand|book|lantern|torch|map|backpack|bag|"
        "umbrella|phone|camera|rifle|gun|axe|spear|cup|mug|guitar|flower|bouquet|letter|key|"
        "amulet|ring|necklace|scroll|potion|compass|telescope|basket|briefcase|hammer|pistol"
    ),
    "setting": _terms(
        "throne room|space station|battlefield|forest camp|camp|campsite|forest|castle|beach|city|street|desert|"
        "mountain|snow|inn|pub|"
        "cliff|cave|tavern|library|kitchen|office|ship|village|river|lake|market|temple|ruins|"
        "dungeon|garden|park|rooftop|bridge|harbour|harbor|jungle|swamp|meadow|classroom|cafe|"
        "bar|station|airport|palace|snowfield|field|room|house"
    ),
    "mood": _terms(
        "happy|sad|angry|determined|scared|afraid|calm|tired|exhausted|joyful|furious|anxious|"
        "nervous|confident|melancholic|fierce|worried|triumphant|smiling|crying|laughing|grim|"
        "serene|defiant|terrified|relieved"
    ),
}
_MOOD_ALIASES = {
    "afraid": "scared",
    "smiling": "happy",
    "laughing": "happy",
    "crying": "sad",
    "terrified": "scared",
}
#: a time of day the prompt names goes with the setting ("cliff at sunset"): renderers draw the light from it
_TIME_OF_DAY = re.compile(
    r"\b(?:at|in the|during|by)\s+(sunset|sunrise|dawn|dusk|night|midnight|noon|twilight|evening|morning|daybreak)\b"
)
_INJURY_CONTEXT = re.compile(
    r"\s+(?:on|across|over|above|below|under)\s+(?:his|her|their|the|its|a)\s+((?:left|right)\s+)?([a-z]+)"
)


@dataclass
class ExtractedState:
    added: dict[str, list[str]]
    removed: dict[str, list[str]]
    description: str
    #: "vision:<model>" or "heuristic"
    source: str
    #: why the vision model was not used (empty when it was, or when none is configured)
    fallback_reason: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def _dedupe(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for it in items:
        it = re.sub(r"\s+", " ", it).strip()
        key = normalize_name(it)
        if it and key and key not in seen:
            seen.add(key)
            out.append(it)
    return out


def _category_of(name: str) -> str | None:
    words = set(name.split())
    for cat in ("clothing", "props", "injuries"):
        for term in VOCAB[cat]:
            t = normalize_name(term)
            if t == name or t in words:
                return cat
    return None


def removals_from_text(text: str) -> dict[str, list[str]]:
    """What a scene's text ends, by category (via the memory service's removal phrase reader)."""
    out: dict[str, list[str]] = {}
    for r in infer_removals(text or ""):
        if r.all_of_category or not r.name or r.name == "*":
            continue
        cat = r.category if r.category != ANY else _category_of(r.name)
        if cat is None:
            continue
        out.setdefault(cat, []).append(r.name)
    return {k: _dedupe(v) for k, v in out.items()}


def _removed_names(removed: Mapping[str, Sequence[str]]) -> set[str]:
    return {normalize_name(n) for names in removed.values() for n in names}


def _drop_removed(added: dict[str, list[str]], removed: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    gone = _removed_names(removed)

    def kept(name: str) -> bool:
        n = normalize_name(name)
        words = set(n.split())
        return not any(g == n or (g and set(g.split()) <= words) for g in gone)

    return {cat: [n for n in names if kept(n)] for cat, names in added.items()}


def _term_patterns() -> list[tuple[str, str, re.Pattern[str]]]:
    """Each vocabulary term with its pattern, in the order terms are tried (compiled once: a prompt is read
    several times a job)."""
    out = []
    for cat in CATEGORIES:
        for term in VOCAB[cat]:
            mod = r"(?:(?:" + _MODIFIERS + r")\s+)?" if cat in ("clothing", "props") else ""
            plural = "" if term.endswith("s") or " " in term else "(?:s|es)?"
            out.append((cat, term, re.compile(r"\b(" + mod + re.escape(term) + plural + r")\b")))
    return out


_TERM_PATTERNS = _term_patterns()


def heuristic_state(user_prompt: str) -> ExtractedState:
    """Keyword extraction from the user's prompt: a labelled heuristic, never presented as vision."""
    text = (user_prompt or "").casefold().replace("\u2019", "'")
    found: dict[str, list[tuple[int, str]]] = {c: [] for c in CATEGORIES}
    taken: list[tuple[int, int]] = []

    def free(a: int, b: int) -> bool:
        return all(b <= s or a >= e for s, e in taken)

    for cat, term, pattern in _TERM_PATTERNS:
        if term not in text:  # each pattern holds its term as written
            continue
        for m in pattern.finditer(text):
            if not free(m.start(), m.end()):
                continue
            name = m.group(1)
            end = m.end()
            if cat == "injuries":
                ctx = _INJURY_CONTEXT.match(text, m.end())
                if ctx:
                    name = f"{name} on {(ctx.group(1) or '')}{ctx.group(2)}"
                    end = ctx.end()
            if cat == "mood":
                name = _MOOD_ALIASES.get(name, name)
            taken.append((m.start(), end))
            found[cat].append((m.start(), name))
    added: dict[str, list[str]] = {}
    for cat, hits in found.items():
        names = _dedupe(n for _, n in sorted(hits))
        if cat in ("setting", "mood"):
            names = names[:1]  # one value at a time: the first one named
        if names:
            added[cat] = names
    when = _TIME_OF_DAY.search(text)
    if when and added.get("setting"):
        added["setting"] = [f"{added['setting'][0]} at {when.group(1)}"]
    removed = removals_from_text(user_prompt)
    added = {k: v for k, v in _drop_removed(added, removed).items() if v}
    description = re.sub(r"\s+", " ", user_prompt or "").strip()[:300]
    return ExtractedState(added=added, removed=removed, description=description, source=HEURISTIC)


# --- the vision model -------------------------------------------------------------------------------------------


class SceneState(BaseModel):
    """The JSON schema the vision model answers in."""

    clothing: list[str] = Field(
        default_factory=list, description="Garments and accessories the character wears."
    )
    injuries: list[str] = Field(default_factory=list, description="Visible injuries, with where they are.")
    props: list[str] = Field(default_factory=list, description="Objects the character holds or carries.")
    setting: list[str] = Field(default_factory=list, description="Where the scene takes place (one place).")
    mood: list[str] = Field(default_factory=list, description="The character's mood (one word).")
    description: str = Field("", description="One sentence describing the scene.")


INSTRUCTIONS = (
    "You read the story state of one character in a generated image. List only what is visible on or around "
    "the main character: clothing, injuries (with location), props held or carried, the setting (one place) and "
    "the mood (one word). Use short lowercase noun phrases. Then one sentence describing the scene. "
    "The scene was requested as: "
)


class VisionStateReader:
    """Gemini vision through the real google-genai client (pointed at a fake server in tests)."""

    def __init__(self, api_key: str, model: str, *, base_url: str = "", timeout_s: float = 30.0) -> None:
        self.api_key = api_key
        self.model = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        self._client: Any = None

    @property
    def label(self) -> str:
        return f"vision:{self.model}"

    def _get_client(self) -> Any:
        if self._client is None:
            from google import genai
            from google.genai import types

            opts: dict[str, Any] = {"timeout": max(1, int(self.timeout_s * 1000)), "retry_options": None}
            if self.base_url:
                opts["base_url"] = self.base_url
            self._client = genai.Client(api_key=self.api_key, http_options=types.HttpOptions(**opts))
        return self._client

    async def read(self, image: bytes, mime: str, user_prompt: str) -> SceneState:
        client = self._get_client()
        with metrics.timed(
            metrics.LLM_SECONDS, metrics.LLM_ERRORS, provider="gemini", model=self.model, purpose="state"
        ):
            resp = await self._generate(client, image, mime, user_prompt)
        text = resp.text or ""
        try:
            return SceneState.model_validate(json.loads(text))
        except (ValueError, ValidationError) as e:
            raise ValueError(f"the vision model answered something that is not the state schema: {e}") from e

    async def _generate(self, client: Any, image: bytes, mime: str, user_prompt: str) -> Any:
        from google.genai import types

        return await client.aio.models.generate_content(
            model=self.model,
            contents=[
                types.Part.from_bytes(data=image, mime_type=mime or "image/png"),
                INSTRUCTIONS + user_prompt,
            ],
            config=types.GenerateContentConfig(
                response_mime_type="application/json",
                response_schema=SceneState,
                temperature=0.0,
            ),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            try:
                await self._client.aio.aclose()
            except Exception as e:  # noqa: BLE001 - closing must not fail a shutdown
                log.debug("closing the Gemini client failed: %s", e)


class StateExtractor:
    """Vision when configured, the heuristic otherwise or when the vision model fails."""

    def __init__(self, reader: VisionStateReader | None = None, *, timeout_s: float = 30.0) -> None:
        self.reader = reader
        self.timeout_s = timeout_s

    @property
    def uses_vision(self) -> bool:
        return self.reader is not None

    async def extract(
        self,
        *,
        user_prompt: str,
        image: bytes | None = None,
        mime: str = "image/png",
        vision_prompt: str = "",
    ) -> ExtractedState:
        """The state after the scene; `vision_prompt` (default `user_prompt`) is what the vision model is asked
        with, e.g. the whole scene and which of its people to report on, while the heuristic and the removals
        read `user_prompt`."""
        fallback = ""
        if self.reader is not None and image:
            try:
                async with asyncio.timeout(self.timeout_s):
                    scene = await self.reader.read(image, mime, vision_prompt or user_prompt)
            except Exception as e:  # noqa: BLE001 - the heuristic is always there
                fallback = f"{self.reader.label} failed: {type(e).__name__}: {e}"[:500]
                log.warning("state extraction falls back to the heuristic: %s", fallback)
            else:
                added = {c: _dedupe(getattr(scene, c)) for c in CATEGORIES}
                for c in ("setting", "mood"):
                    added[c] = added[c][:1]
                removed = removals_from_text(user_prompt)
                added = {k: v for k, v in _drop_removed(added, removed).items() if v}
                return ExtractedState(
                    added=added,
                    removed=removed,
                    description=scene.description.strip()[:500],
                    source=self.reader.label,
                    raw=scene.model_dump(),
                )
        elif self.reader is not None:
            fallback = "no image to read"
        out = heuristic_state(user_prompt)
        out.fallback_reason = fallback
        return out

    async def aclose(self) -> None:
        if self.reader is not None:
            await self.reader.aclose()
