"""Credentials: argon2 password hashes, HS256 JWTs (algorithm pinned), API keys (shown once, stored hashed).

Pure functions over settings and bytes; the database side is `gateway.users`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.errors import ApiError, unauthenticated
from gateway.settings import GatewaySettings
from idlock.settings import dev_secret

log = logging.getLogger("idlock.gateway.auth")

#: the only algorithm accepted when decoding; tokens claiming another (or `none`) are refused
JWT_ALGORITHM = "HS256"
DEV_SECRET_FILE = "gateway-jwt-secret"
API_KEY_PREFIX = "idl"

_hasher = PasswordHasher()
# a real hash of a random password: verifying against it when the email is unknown keeps timing uniform
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


# ---- passwords ---------------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches; a missing user still costs one argon2 verification."""
    try:
        return _hasher.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


#: the 11,611 passwords of 8+ characters among the 30,000 most common ones (zxcvbn's list, MIT; see data/SOURCES.md)
COMMON_PASSWORDS_FILE = Path(__file__).resolve().parent / "data" / "common_passwords.txt"
_common: frozenset[str] | None = None


def common_passwords() -> frozenset[str]:
    global _common
    if _common is None:
        _common = frozenset(
            w.strip().lower() for w in COMMON_PASSWORDS_FILE.read_text().splitlines() if w.strip()
        )
    return _common


def check_password_strength(password: str, min_length: int, email: str = "") -> None:
    """400 `weak_password` naming the rule: length, a common (breached) password, the email, too few characters."""

    def weak(why: str) -> ApiError:
        return ApiError(400, "weak_password", f"password refused: {why}")

    if len(password) < min_length:
        raise weak(f"it must be at least {min_length} characters")
    if len(password) > 1024:
        raise weak("it must be at most 1024 characters")
    lowered = password.lower()
    if lowered in common_passwords():
        raise weak("it is one of the most common passwords, which attackers try first")
    local = email.lower().split("@", 1)[0]
    if email and (lowered == email.lower() or (len(local) >= 4 and local in lowered)):
        raise weak("it must not contain your email address")
    if len(set(password)) < 5:
        raise weak("it uses fewer than 5 different characters")


# ---- JWT secret --------------------------------------------------------------------------------------------


def resolve_secret(settings: GatewaySettings, data_dir: Path) -> str:
    """The configured secret, or a development secret generated once per data dir and kept there (0600)."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    return dev_secret(Path(data_dir) / DEV_SECRET_FILE, "IDLOCK_GATEWAY_JWT_SECRET")


# ---- JWT ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    issued_at: int
    expires_at: int


def issue_token(
    user_id: str, *, secret: str, expiry_s: int, issuer: str, now: float | None = None
) -> tuple[str, int]:
    """(token, expires_at) for `user_id`."""
    iat = int(now if now is not None else time.time())
    exp = iat + int(expiry_s)
    claims = {"sub": user_id, "iat": iat, "nbf": iat, "exp": exp, "iss": issuer, "jti": secrets.token_hex(8)}
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM, headers={"typ": "JWT"}), exp


def decode_token(token: str, *, secret: str, issuer: str, leeway_s: int = 5) -> TokenClaims:
    """Verify signature (HS256 only), expiry, issuer and required claims, or raise 401."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise unauthenticated("malformed access token") from exc
    if header.get("alg") != JWT_ALGORITHM:
        raise unauthenticated(
            f"access token algorithm {header.get('alg')!r} is not accepted (only {JWT_ALGORITHM})"
        )
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            issuer=issuer,
            leeway=leeway_s,
            options={"require": ["sub", "iat", "exp", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise unauthenticated("access token has expired; log in again") from exc
    except jwt.InvalidTokenError as exc:
        raise unauthenticated(f"invalid access token: {exc}") from exc
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise unauthenticated("invalid access token: no subject")
    return TokenClaims(user_id=sub, issued_at=int(claims["iat"]), expires_at=int(claims["exp"]))


# ---- API keys ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewApiKey:
    key_id: str
    plaintext: str
    secret_hash: str


def hash_key_secret(secret: str) -> str:
    # API key secrets are 256 random bits: a fast hash is enough (unlike passwords) and keeps lookups cheap
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key() -> NewApiKey:
    key_id = "key_" + secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewApiKey(
        key_id=key_id, plaintext=f"{API_KEY_PREFIX}_{key_id}_{secret}", secret_hash=hash_key_secret(secret)
    )


def parse_api_key(plaintext: str) -> tuple[str, str]:
    """(key_id, secret) of `idl_key_<hex>_<secret>`, or 401."""
    prefix, _, rest = plaintext.strip().partition("_")
    kind, _, rest = rest.partition("_")
    key_hex, _, secret = rest.partition("_")
    if prefix != API_KEY_PREFIX or kind != "key" or not key_hex or not secret:
        raise unauthenticated("malformed API key")
    return f"key_{key_hex}", secret


def key_secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key_secret(secret), stored_hash)
