"""Passwords (argon2), JWTs (HS256 pinned, expiry, issuer), API keys, the development secret."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import time

import jwt
import pytest

from gateway import auth
from gateway.errors import ApiError
from gateway.settings import GatewaySettings

SECRET = "s" * 64
ISSUER = "idlock-gateway"


def test_password_hash_is_argon2_and_verifies() -> None:
    h = auth.hash_password("correct horse battery")
    assert h.startswith("$argon2id$") and "correct" not in h
    assert auth.verify_password(h, "correct horse battery")
    assert not auth.verify_password(h, "wrong horse battery")
    assert not auth.verify_password(None, "anything")  # unknown user
    assert not auth.verify_password("not-a-hash", "anything")
    assert auth.hash_password("same") != auth.hash_password("same")  # salted


def test_password_strength() -> None:
    with pytest.raises(ApiError, match="at least 10 characters"):
        auth.check_password_strength("short", 10)
    auth.check_password_strength("long enough!", 10)


def test_token_round_trip() -> None:
    now = time.time()
    token, exp = auth.issue_token("usr_1", secret=SECRET, expiry_s=600, issuer=ISSUER, now=now)
    assert exp == int(now) + 600
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = auth.decode_token(token, secret=SECRET, issuer=ISSUER)
    assert claims.user_id == "usr_1" and claims.expires_at == exp


def test_expired_token_is_refused() -> None:
    token, _ = auth.issue_token("usr_1", secret=SECRET, expiry_s=60, issuer=ISSUER, now=time.time() - 3600)
    with pytest.raises(ApiError) as info:
        auth.decode_token(token, secret=SECRET, issuer=ISSUER)
    assert info.value.status == 401 and "expired" in info.value.message


def test_wrong_secret_and_issuer_are_refused() -> None:
    token, _ = auth.issue_token("usr_1", secret=SECRET, expiry_s=60, issuer=ISSUER)
    with pytest.raises(ApiError, match="invalid access token"):
        auth.decode_token(token, secret="t" * 64, issuer=ISSUER)
    with pytest.raises(ApiError, match="invalid access token"):
        auth.decode_token(token, secret=SECRET, issuer="someone-else")


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def test_alg_none_token_is_refused() -> None:
    claims = {"sub": "usr_admin", "iat": int(time.time()), "exp": int(time.time()) + 600, "iss": ISSUER}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    with pytest.raises(ApiError) as info:
        auth.decode_token(unsigned, secret=SECRET, issuer=ISSUER)
    assert info.value.status == 401 and "'none' is not accepted" in info.value.message


@pytest.mark.parametrize("alg", ["HS512", "HS384"])
def test_other_algorithms_are_refused_even_with_the_right_secret(alg: str) -> None:
    claims = {"sub": "usr_1", "iat": int(time.time()), "exp": int(time.time()) + 600, "iss": ISSUER}
    token = jwt.encode(claims, SECRET, algorithm=alg)
    with pytest.raises(ApiError, match=f"'{alg}' is not accepted"):
        auth.decode_token(token, secret=SECRET, issuer=ISSUER)


def test_token_without_required_claims_is_refused() -> None:
    token = jwt.encode({"sub": "usr_1", "iss": ISSUER}, SECRET, algorithm="HS256")  # no exp
    with pytest.raises(ApiError, match="invalid access token"):
        auth.decode_token(token, secret=SECRET, issuer=ISSUER)
    with pytest.raises(ApiError, match="malformed"):
        auth.decode_token("not.a.token", secret=SECRET, issuer=ISSUER)


def test_api_keys_are_random_and_stored_hashed() -> None:
    a, b = auth.new_api_key(), auth.new_api_key()
    assert a.plaintext != b.plaintext and a.key_id != b.key_id
    key_id, secret = auth.parse_api_key(a.plaintext)
    assert key_id == a.key_id
    assert secret not in a.secret_hash and auth.key_secret_matches(secret, a.secret_hash)
    assert not auth.key_secret_matches(secret + "x", a.secret_hash)
    for bad in ("", "nope", "idl_key_", "xyz_key_abc_def", "idl_other_abc_def"):
        with pytest.raises(ApiError, match="malformed API key"):
            auth.parse_api_key(bad)


def test_dev_secret_is_generated_once_per_data_dir(tmp_path, caplog) -> None:
    settings = GatewaySettings()
    with caplog.at_level(logging.WARNING, logger="idlock.gateway.auth"):
        first = auth.resolve_secret(settings, tmp_path)
    assert "IDLOCK_GATEWAY_JWT_SECRET is not set" in caplog.text
    assert len(first) >= 32
    assert auth.resolve_secret(settings, tmp_path) == first
    mode = stat.S_IMODE(os.stat(tmp_path / auth.DEV_SECRET_FILE).st_mode)
    assert mode == 0o600
    assert auth.resolve_secret(settings, tmp_path / "other") != first


def test_configured_secret_wins_and_must_be_strong(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IDLOCK_GATEWAY_JWT_SECRET", "k" * 40)
    assert auth.resolve_secret(GatewaySettings(), tmp_path) == "k" * 40
    assert not (tmp_path / auth.DEV_SECRET_FILE).exists()
    monkeypatch.setenv("IDLOCK_GATEWAY_JWT_SECRET", "short")
    with pytest.raises(ValueError, match="at least 32"):
        GatewaySettings()
