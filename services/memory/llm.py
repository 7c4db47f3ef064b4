"""Optional LLM formatting of the template prompt through the real `groq` client (seed §7 "LLM handling").

The LLM only formats: temperature 0, and its output is checked to keep every must-keep trait, the constraint lines
and the negative tokens, to add no identity change and no denied term. Anything else -> the template is used and
the result says why (`engine="template"`, `fallback_reason=...`). Without an API key the template is used, labelled.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from idlock import metrics

from .clock import ModelClock
from .prompt import (
    CONSTRAINT_LINES,
    ComposedPrompt,
    PromptInputs,
    find_denied,
    negative_tokens,
    strip_control,
)

log = logging.getLogger(__name__)

SYSTEM_PROMPT = (
    "You format image-generation prompts. Rewrite the structured prompt the user sends into one clean, concise "
    "prompt string. Keep every character trait exactly as written, keep every constraint sentence verbatim, and "
    "end with the line 'Negative tokens: ' followed by every negative token verbatim. Do not invent, remove or "
    "change any identity property (face, eyes, hair, marks). Produce the prompt string only, no commentary."
)

NO_KEY_REASON = "no llm configured (groq api key empty)"

_EYE_COLOURS = (
    "blue",
    "green",
    "brown",
    "hazel",
    "grey",
    "gray",
    "amber",
    "black",
    "violet",
    "red",
    "golden",
)
_IDENTITY_CHANGE_RES = (
    re.compile(
        r"\b(?:change|changes|changed|changing|alter|alters|altered|altering|replace|replaces|swap|swaps)\s+"
        r"(?:(?:his|her|their|the|its)\s+)?(?:face|facial|eyes?|eye\s+colou?r|identity|features)\b"
    ),
    re.compile(r"\b(?:different|new|another)\s+(?:face|person|identity|eye\s+colou?r|character)\b"),
    re.compile(r"\bmorph(?:s|ed|ing)?\s+(?:into|identity|face)\b"),
    re.compile(r"\blooks?\s+like\s+(?:a\s+different|someone\s+else|another)\b"),
)


@dataclass(frozen=True)
class LlmConfig:
    api_key: str = ""
    base_url: str = ""
    model: str = "llama-3.1-8b-instant"
    timeout_s: float = 10.0
    max_retries: int = 2
    max_chars: int = 8000
    max_tokens: int = 1024

    @property
    def enabled(self) -> bool:
        return bool(self.api_key)

    def engine_key(self) -> str:
        """What identifies the engine in cache keys (never the key itself)."""
        if not self.enabled:
            return "template"
        return f"llm|{self.model}|{self.base_url or 'default'}|t0"

    @classmethod
    def from_settings(cls, s: Any) -> LlmConfig:
        return cls(
            api_key=s.groq_api_key.get_secret_value(),
            base_url=s.groq_base_url,
            model=s.groq_model,
            timeout_s=s.llm_timeout_s,
            max_retries=s.llm_max_retries,
            max_chars=s.composed_max_chars,
        )


class LlmUnavailable(Exception):
    """The LLM could not answer (after the client's retries); `reason` is user-facing."""

    def __init__(self, reason: str, *, transient: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


def clean_llm_output(text: str) -> str:
    """Keep line breaks, drop every other control/format character, trim each line and the whole."""
    import unicodedata

    lines = []
    for line in unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        lines.append(strip_control(line))
    return "\n".join(lines).strip()


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.casefold()).strip()


def validate_llm_output(
    text: str, inp: PromptInputs, *, deny_list: tuple[str, ...] | list[str] = (), max_chars: int = 8000
) -> str | None:
    """None when the LLM output is acceptable, else the reason it is not."""
    if not text.strip():
        return "llm output empty"
    if len(text) > max_chars:
        return f"llm output too long ({len(text)} > {max_chars} characters)"
    low = _norm(text)
    for trait in inp.sheet.must_keep:
        t = _norm(strip_control(trait))
        if t and t not in low:
            return f"llm output dropped must-keep trait '{strip_control(trait)}'"
    for line in CONSTRAINT_LINES:
        if _norm(line).rstrip(".") not in low:
            return f"llm output dropped constraint '{line}'"
    neg = negative_tokens(inp.overrides)
    for tok in neg:
        if not re.search(r"(?<!\w)" + re.escape(_norm(tok)) + r"(?!\w)", low):
            return f"llm output dropped negative token '{tok}'"
    # identity changes, looked for outside the required constraint sentences and negative tokens
    scrub = low
    for line in CONSTRAINT_LINES:
        scrub = scrub.replace(_norm(line).rstrip("."), " ")
    for tok in neg:
        scrub = scrub.replace(_norm(tok), " ")
    scrub = scrub.replace("do not alter facial proportions, eye color, or placement", " ")
    for rx in _IDENTITY_CHANGE_RES:
        m = rx.search(scrub)
        if m:
            return f"llm output adds a forbidden identity change '{m.group(0)}'"
    eyes = _norm(inp.sheet.eyes)
    if eyes:
        keep = {c for c in _EYE_COLOURS if c in eyes}
        if keep:
            for m in re.finditer(r"\b(" + "|".join(_EYE_COLOURS) + r")(?:[- ]\w+)?\s+eyes?\b", scrub):
                if m.group(1) not in keep:
                    return f"llm output changed eye color to '{m.group(0)}'"
    term = find_denied(text, list(deny_list))
    if term is not None:
        return f"llm output contains the denied term '{term}'"
    return None


class GroqLlm:
    """Thin async wrapper over `groq.AsyncGroq` (the real client: its retries, backoff and retry-after)."""

    def __init__(self, config: LlmConfig, client: Any | None = None) -> None:
        self.config = config
        self._client = client

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def _get_client(self) -> Any:
        if self._client is None:
            import groq

            kw: dict[str, Any] = {
                "api_key": self.config.api_key,
                "max_retries": self.config.max_retries,
                "timeout": self.config.timeout_s,
            }
            if self.config.base_url:
                kw["base_url"] = self.config.base_url
            self._client = groq.AsyncGroq(**kw)
        return self._client

    async def complete(self, system: str, user: str, purpose: str = "prompt") -> str:
        """One chat completion at temperature 0; raises `LlmUnavailable` with a reason on any failure. `purpose`
        labels its metrics (prompt, summary)."""
        if not self.enabled:
            raise LlmUnavailable(NO_KEY_REASON, transient=False)
        with metrics.timed(
            metrics.LLM_SECONDS, metrics.LLM_ERRORS, provider="groq", model=self.config.model, purpose=purpose
        ):
            return await self._complete(system, user)

    async def _complete(self, system: str, user: str) -> str:
        import groq

        try:
            resp = await self._get_client().chat.completions.create(
                model=self.config.model,
                temperature=0,
                max_tokens=self.config.max_tokens,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            )
        except groq.RateLimitError as e:
            raise LlmUnavailable(
                f"llm rate limited (HTTP 429) after {self.config.max_retries} retries"
            ) from e
        except groq.APIStatusError as e:
            transient = e.status_code >= 500 or e.status_code in (408, 409)
            raise LlmUnavailable(
                f"llm error HTTP {e.status_code}"
                + (f" after {self.config.max_retries} retries" if transient else ""),
                transient=transient,
            ) from e
        except groq.APITimeoutError as e:
            raise LlmUnavailable(f"llm timed out after {self.config.max_retries} retries") from e
        except groq.APIConnectionError as e:
            raise LlmUnavailable(f"llm unreachable after {self.config.max_retries} retries") from e
        except groq.GroqError as e:
            raise LlmUnavailable(f"llm error: {type(e).__name__}", transient=False) from e
        try:
            content = resp.choices[0].message.content
        except (AttributeError, IndexError) as e:
            raise LlmUnavailable("llm answer malformed", transient=False) from e
        return content or ""

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


async def format_prompt(
    template: ComposedPrompt,
    inp: PromptInputs,
    llm: GroqLlm | None,
    *,
    deny_list: tuple[str, ...] | list[str] = (),
    clock: ModelClock | None = None,
) -> ComposedPrompt:
    """The LLM-formatted prompt when the LLM answers acceptably, else `template` with the fallback reason.
    The wait on the LLM is model time on `clock`."""
    if llm is None or not llm.enabled:
        return replace(template, engine="template", fallback_reason=NO_KEY_REASON)
    clock = clock or ModelClock()
    try:
        text = await clock.timed(llm.complete(SYSTEM_PROMPT, template.prompt))
    except LlmUnavailable as e:
        log.warning("llm formatting failed, using the template: %s", e.reason)
        return replace(template, engine="template", fallback_reason=e.reason)
    text = clean_llm_output(text)
    reason = validate_llm_output(text, inp, deny_list=deny_list, max_chars=llm.config.max_chars)
    if reason is not None:
        log.warning("llm output rejected, using the template: %s", reason)
        return replace(template, engine="template", fallback_reason=reason)
    return replace(template, prompt=text, engine="llm", fallback_reason=None)
