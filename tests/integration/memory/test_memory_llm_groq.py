"""LLM formatting through the real groq client against the local fake server."""

import pytest

from services.memory.llm import NO_KEY_REASON, GroqLlm, LlmConfig, format_prompt, validate_llm_output
from services.memory.prompt import (
    CONSTRAINT_LINES,
    MANDATORY_NEGATIVE_TOKENS,
    CharacterSheet,
    PromptInputs,
    compose_template,
)
from tests.fakes.groq_server import FakeGroqServer
from tests.metrics_probe import metrics_change

SHEET = CharacterSheet(
    name="Aria", eyes="green eyes", hair="short silver hair", must_keep=("green eyes", "short silver hair")
)
INP = PromptInputs(sheet=SHEET, user_prompt="Aria rides through the rain.")
GOOD = (
    "Aria, green eyes, short silver hair, rides through the rain, photorealistic. "
    + " ".join(CONSTRAINT_LINES)
    + " Negative tokens: "
    + ", ".join(MANDATORY_NEGATIVE_TOKENS)
)


@pytest.fixture(scope="module")
def fake():
    with FakeGroqServer() as f:
        yield f


@pytest.fixture
def llm(fake):
    fake.reset()
    g = GroqLlm(
        LlmConfig(api_key="test-key", base_url=fake.base_url, model="fake-model", timeout_s=5, max_retries=2)
    )
    yield g


async def test_formats_with_real_client(fake, llm):
    fake.reply(GOOD)
    cp = await format_prompt(compose_template(INP), INP, llm)
    assert cp.engine == "llm" and cp.fallback_reason is None
    assert cp.prompt == GOOD
    assert cp.negative_prompt == ", ".join(MANDATORY_NEGATIVE_TOKENS)
    req = fake.requests[-1]
    assert req["temperature"] == 0
    assert req["model"] == "fake-model"
    assert req["messages"][1]["content"] == compose_template(INP).prompt
    assert fake.headers[-1]["authorization"] == "Bearer test-key"
    await llm.aclose()


async def test_echoed_template_is_accepted(fake, llm):
    fake.echo_user()
    tpl = compose_template(INP)
    cp = await format_prompt(tpl, INP, llm)
    assert cp.engine == "llm" and cp.prompt == tpl.prompt.strip()


async def test_dropped_trait_falls_back(fake, llm):
    fake.reply(GOOD.replace("short silver hair", "long hair"))
    tpl = compose_template(INP)
    cp = await format_prompt(tpl, INP, llm)
    assert cp.engine == "template"
    assert cp.fallback_reason == "llm output dropped must-keep trait 'short silver hair'"
    assert cp.prompt == tpl.prompt


async def test_dropped_negative_token_and_identity_change(fake, llm):
    fake.reply(GOOD.replace(", watermark", ""))
    cp = await format_prompt(compose_template(INP), INP, llm)
    assert cp.fallback_reason == "llm output dropped negative token 'watermark'"
    fake.reply(GOOD + " She now has blue eyes.")
    cp = await format_prompt(compose_template(INP), INP, llm)
    assert cp.engine == "template" and "eye color" in cp.fallback_reason
    fake.reply(GOOD + " Give her a different face.")
    cp = await format_prompt(compose_template(INP), INP, llm)
    assert "forbidden identity change" in cp.fallback_reason


async def test_429_retried_then_succeeds(fake, llm):
    fake.reply(GOOD)
    fake.script([(429, None), (503, None)])
    cp = await format_prompt(compose_template(INP), INP, llm)
    assert cp.engine == "llm"
    assert fake.calls == 3


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_persistent_errors_fall_back(fake, llm, status):
    fake.fail_always(status)
    cp = await format_prompt(compose_template(INP), INP, llm)
    assert cp.engine == "template"
    assert f"HTTP {status}" in cp.fallback_reason and "after 2 retries" in cp.fallback_reason
    assert fake.calls == 3  # 1 + max_retries


async def test_no_key_is_template_labelled(fake):
    fake.reset()
    cp = await format_prompt(
        compose_template(INP), INP, GroqLlm(LlmConfig(api_key="", base_url=fake.base_url))
    )
    assert cp.engine == "template" and cp.fallback_reason == NO_KEY_REASON
    cp = await format_prompt(compose_template(INP), INP, None)
    assert cp.fallback_reason == NO_KEY_REASON
    assert fake.calls == 0


def test_validate_denied_term():
    assert (
        validate_llm_output(GOOD + " gore", INP, deny_list=["gore"])
        == "llm output contains the denied term 'gore'"
    )
    assert validate_llm_output(GOOD, INP) is None


async def test_control_characters_cleaned(fake, llm):
    fake.reply("\x1b[31m" + GOOD.replace(" Never", "\r\nNever") + "\u200b\x00")
    cp = await format_prompt(compose_template(INP), INP, llm)
    assert cp.engine == "llm"
    assert "\x1b" not in cp.prompt and "\x00" not in cp.prompt and "\u200b" not in cp.prompt
    assert "\nNever change facial structure" in cp.prompt


async def test_calls_and_failures_are_exported(fake, llm):
    fake.reply(GOOD)
    with metrics_change() as grew:
        await format_prompt(compose_template(INP), INP, llm)
        fake.fail_always(500)
        await format_prompt(compose_template(INP), INP, llm)
    labels = {"provider": "groq", "model": "fake-model", "purpose": "prompt"}
    assert grew("idlock_llm_seconds_count", **labels) == 2
    assert grew("idlock_llm_errors_total", **labels) == 1
