"""Who is calling inside the mesh: every RPC between services carries a signed service token, and every server
refuses a call without a valid one (UNAUTHENTICATED). Health checks stay open for probes.

A token is `<component>.<expiry>.<signature>`, the signature an HMAC-SHA256 over both with the mesh's shared key
(`IDLOCK_MESH_TOKEN_KEY`, at least 32 characters; a Kubernetes secret). Without the setting, a development key is
made once in the data dir and shared by every process of a local mesh (`idlock up` starts them on one data dir).
The caller's component is then known to the servicer (`caller()`), so a service can tell the gateway acting for a
user from an internal service acting for the system.
"""

from __future__ import annotations

import base64
import contextvars
import hashlib
import hmac
import logging
import re
import threading
import time
from pathlib import Path
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from idlock.settings import IdlockSettings, dev_secret

log = logging.getLogger("idlock.mesh_auth")

METADATA_KEY = "x-idlock-mesh-token"
DEV_KEY_FILE = "mesh-token-key"
#: what a component's name looks like (the signature, not the name, is what is trusted)
COMPONENT = re.compile(r"^[a-z][a-z0-9-]{0,39}$")

_caller: contextvars.ContextVar[str] = contextvars.ContextVar("idlock_mesh_caller", default="")


class MeshAuthSettings(IdlockSettings):
    model_config = SettingsConfigDict(env_prefix="IDLOCK_MESH_")
    component: ClassVar[str] = "mesh"

    token_key: SecretStr | None = Field(
        None,
        description=(
            "Shared key that signs the service tokens every internal call carries (at least 32 characters; the "
            "same in every service and the gateway). Empty: a development key made once in the data dir."
        ),
    )
    token_ttl_s: int = Field(600, ge=30, le=86400, description="Lifetime of a service token (seconds).")

    @field_validator("token_key")
    @classmethod
    def _strong(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None or not v.get_secret_value():
            return None
        if len(v.get_secret_value()) < 32:
            raise ValueError("IDLOCK_MESH_TOKEN_KEY must be at least 32 characters")
        return v


class InvalidToken(Exception):
    """A missing, malformed, forged or expired service token."""


def resolve_key(settings: MeshAuthSettings, data_dir: str | Path) -> bytes:
    """The configured key, or the data dir's development key (made once, 0600, shared by the mesh's processes)."""
    if settings.token_key is not None:
        return settings.token_key.get_secret_value().encode()
    return dev_secret(Path(data_dir) / DEV_KEY_FILE, "IDLOCK_MESH_TOKEN_KEY").encode()


def _sign(key: bytes, component: str, expiry: int) -> str:
    mac = hmac.new(key, f"idlock-mesh-v1\n{component}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


class MeshAuth:
    """One process's signer (its own component) and verifier (the mesh's key)."""

    def __init__(self, component: str, key: bytes, ttl_s: int = 600) -> None:
        if not COMPONENT.match(component):
            raise ValueError(f"a mesh component name is lowercase letters, digits and '-': {component!r}")
        self.component = component
        self._key = key
        self._ttl_s = ttl_s
        self._token = ("", 0)
        self._lock = threading.Lock()

    def token(self) -> str:
        """This process's token, renewed when half its life is gone."""
        now = int(time.time())
        with self._lock:
            token, expiry = self._token
            if expiry - now < self._ttl_s // 2:
                expiry = now + self._ttl_s
                token = f"{self.component}.{expiry}.{_sign(self._key, self.component, expiry)}"
                self._token = (token, expiry)
            return token

    def verify(self, token: str) -> str:
        """The calling component, or InvalidToken."""
        try:
            component, expiry_s, signature = token.split(".")
            expiry = int(expiry_s)
        except ValueError:
            raise InvalidToken("malformed service token") from None
        if not COMPONENT.match(component):
            raise InvalidToken("malformed caller in the service token")
        if not hmac.compare_digest(signature, _sign(self._key, component, expiry)):
            raise InvalidToken("service token signature does not match")
        if expiry < time.time():
            raise InvalidToken("service token expired")
        return component


_process: MeshAuth | None = None


def configure(component: str, data_dir: str | Path, settings: MeshAuthSettings | None = None) -> MeshAuth:
    """This process's mesh identity: its clients sign as `component`, its servers verify with the same key."""
    global _process
    s = settings or MeshAuthSettings()
    _process = MeshAuth(component, resolve_key(s, data_dir), s.token_ttl_s)
    return _process


def current() -> MeshAuth | None:
    return _process


def caller() -> str:
    """The authenticated component calling the RPC being served ("" outside one)."""
    return _caller.get()


def set_caller(component: str) -> contextvars.Token:
    return _caller.set(component)


def reset_caller(token: contextvars.Token) -> None:
    _caller.reset(token)
