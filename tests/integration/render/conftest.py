"""Render integration tests: the fake Gemini server fixture; images come from tests/conftest.py."""

from tests.fakes.gemini_server import fake_gemini  # noqa: F401  (pytest fixture)
