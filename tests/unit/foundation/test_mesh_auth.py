"""Service tokens: signed by the mesh's key, refused when forged, from another key, expired or malformed."""

from __future__ import annotations

import time

import pytest

from idlock import mesh_auth
from idlock.mesh_auth import InvalidToken, MeshAuth, MeshAuthSettings, resolve_key

KEY = b"k" * 40


def test_a_token_names_its_component_and_is_checked() -> None:
    gateway = MeshAuth("gateway", KEY)
    token = gateway.token()
    assert token.startswith("gateway.") and gateway.token() == token  # reused until half its life is gone
    assert MeshAuth("memory", KEY).verify(token) == "gateway"
    with pytest.raises(InvalidToken, match="signature"):
        MeshAuth("memory", b"x" * 40).verify(token)  # another mesh's key
    forged = token.replace("gateway.", "trainer.", 1)
    with pytest.raises(InvalidToken, match="signature"):
        gateway.verify(forged)  # a component swapped in keeps the old signature
    with pytest.raises(InvalidToken, match="malformed"):
        gateway.verify("")
    with pytest.raises(InvalidToken, match="signature"):
        gateway.verify("mallory.9999999999.abc")
    with pytest.raises(InvalidToken, match="malformed caller"):
        gateway.verify("Mal lory.9999999999.abc")


def test_an_expired_token_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    auth = MeshAuth("refiner", KEY, ttl_s=60)
    token = auth.token()
    monkeypatch.setattr(time, "time", lambda: 10**10)
    with pytest.raises(InvalidToken, match="expired"):
        auth.verify(token)


def test_keys_from_settings_or_one_per_data_dir(tmp_path) -> None:
    assert resolve_key(MeshAuthSettings(token_key="s" * 32), tmp_path) == b"s" * 32
    with pytest.raises(ValueError, match="at least 32"):
        MeshAuthSettings(token_key="short")
    dev = resolve_key(MeshAuthSettings(token_key=None), tmp_path)
    assert len(dev) >= 32 and resolve_key(MeshAuthSettings(token_key=None), tmp_path) == dev  # kept, shared
    assert (tmp_path / mesh_auth.DEV_KEY_FILE).stat().st_mode & 0o077 == 0
