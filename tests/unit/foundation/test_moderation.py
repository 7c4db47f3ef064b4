"""The prompt policy: the three shipped categories on plain and disguised wording, innocent scenes that share
their words, operator lists, and an error that names the category without repeating the prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from idlock.errors import InvalidInput
from idlock.moderation import ModerationSettings, PromptPolicy, PromptRefused, check_prompt, read_terms

POLICY = PromptPolicy()

REFUSED = [
    ("a sexy schoolgirl outfit", "sexual_minors"),
    ("Arya as a 15 year old in lingerie", "sexual_minors"),
    ("a 12yo posing nude", "sexual_minors"),
    ("her little girl, topless", "sexual_minors"),
    ("Arya poses nude on the beach", "sexual_real_person"),
    ("Arya, N.U.D.E, on the beach", "sexual_real_person"),
    ("Arya p0rn scene", "sexual_real_person"),
    ("explicit s e x in the tavern", "sexual_real_person"),
    ("Arya wearing nothing at all", "sexual_real_person"),
    ("Nüde portrait", "sexual_real_person"),
    ("undress her while she sleeps", "non_consensual"),
    ("a hidden camera in the changing room", "non_consensual"),
    ("photos of Arya taken without her consent", "non_consensual"),
]
ALLOWED = [
    "Arya fights a dragon on a cliff at sunset, wearing battle armour and holding a sword",
    "Arya takes off the armour and walks into a tavern",
    "A child watches the knight ride past",
    "a teen reads a book by the fire",
    "Arya raises a naked blade",
    "Arya strips the bark from a branch",
    "The baby dragon sleeps in her arms",
    "Arya at 25 years old, in a red dress",
    "a walk through the Sussex countryside",
    "Arya kisses her husband at the wedding",
]


@pytest.mark.parametrize(("prompt", "category"), REFUSED)
def test_shipped_categories_refuse_plain_and_disguised_wording(prompt: str, category: str) -> None:
    assert POLICY.check(prompt).category == category


@pytest.mark.parametrize("prompt", ALLOWED)
def test_scenes_that_share_the_words_pass(prompt: str) -> None:
    assert POLICY.check(prompt).allowed


def test_the_texts_of_a_request_are_read_together() -> None:
    # a style override can make a prompt what it was not
    assert POLICY.check("Arya at the beach").allowed
    assert POLICY.check("Arya at the beach", "topless").category == "sexual_real_person"


def test_the_error_names_the_category_and_not_the_prompt() -> None:
    with pytest.raises(PromptRefused) as err:
        check_prompt(POLICY, "Arya posing nude by the river")
    assert isinstance(err.value, InvalidInput) and err.value.category == "sexual_real_person"
    assert "sexual content of a real person's character" in err.value.message
    assert "river" not in err.value.message


def test_operator_lists_add_categories_and_phrases(tmp_path: Path) -> None:
    terms = tmp_path / "terms.txt"
    terms.write_text("# ours\ngore: decapitated\nnon_consensual: stolen photos\n", encoding="utf-8")
    policy = PromptPolicy.from_settings(ModerationSettings(terms_path=terms))
    assert policy.check("a decapitated statue").category == "gore"
    assert policy.check("Arya's stolen photos").category == "non_consensual"
    assert policy.check("Arya at the market").allowed
    assert PromptPolicy.from_settings(ModerationSettings(enabled=False)).check("nude").allowed


def test_a_bad_terms_file_names_its_line(tmp_path: Path) -> None:
    terms = tmp_path / "terms.txt"
    terms.write_text("gore: decapitated\nno colon here\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="line 2"):
        read_terms(terms)
    with pytest.raises(InvalidInput, match="cannot read"):
        read_terms(tmp_path / "missing.txt")
