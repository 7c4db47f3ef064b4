"""A local mesh (real processes, offline compositor renderer) shared by the studio's tests, with a user who owns a
character made from real photos."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from idlock.mesh import LocalMesh

#: the test signs its own links with it, to check expired and other users' links
URL_KEY = "studio-test-url-signing-key-0123456789abcdef"
STUDIO_ENV = {
    "IDLOCK_RENDER_PROVIDERS": '["compositor"]',
    "IDLOCK_RENDER_GEMINI_API_KEY": "",
    "IDLOCK_GATEWAY_OBJECT_URL_KEY": URL_KEY,
    "IDLOCK_GATEWAY_RATE_LIMIT_BURST": "1000",
    "IDLOCK_GATEWAY_GENERATE_RATE_LIMIT_BURST": "100",
    "IDLOCK_GATEWAY_AUTH_RATE_LIMIT_BURST": "100",
}
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="package")
def studio_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMesh]:
    with LocalMesh(
        tmp_path_factory.mktemp("studio"), free_ports=True, nats_port=0, extra_env=STUDIO_ENV
    ) as m:
        yield m


@dataclass
class User:
    client: httpx.Client
    user_id: str
    email: str


def sign_up(base: str, email: str, name: str = "") -> User:
    client = httpx.Client(base_url=base, timeout=60)
    made = client.post("/auth/register", json={"email": email, "password": PASSWORD, "name": name})
    assert made.status_code == 201, made.text
    token = client.post("/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return User(client, made.json()["user_id"], email)


def face_photos(faces_dir: Path, n: int = 3) -> list[Path]:
    """`n` photos of the first person in the shared faces folder."""
    person = min(p for p in faces_dir.iterdir() if p.is_dir() and any(p.glob("*.jpg")))
    return sorted(person.glob("*.jpg"))[:n]
