"""Shared fixtures for the whole test suite. Fixtures start real servers (never the machine's own NATS).

- `nats_server`   session: a nats-server with JetStream on a free port, store in a temp dir
- `nats_settings` NatsSettings pointing at it
- `s3_endpoint`   URL of a moto S3 server (session-wide) with fake AWS credentials set for the test
- `postgres_url`  IDLOCK_TEST_POSTGRES_URL, or the test is skipped
- `db_url`        parametrized: "" (embedded SQLite under `data_dir`), the Postgres URL (skipped without)
- `db_schema`     a schema name unique to the test; dropped from Postgres afterwards
- `data_dir`      the test's tmp_path
- `tiny_model`    session: a tiny SD pipeline folder for the trainer tests (skipped without diffusers/peft)
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from idlock import mesh_auth
from idlock.natsd import NatsServer, free_port
from idlock.settings import NatsSettings

POSTGRES_ENV = "IDLOCK_TEST_POSTGRES_URL"

# one mesh key for the whole run: in-process servers, the services the tests spawn (they inherit the environment)
# and the tests' own calls all sign and check service tokens with it
os.environ.setdefault("IDLOCK_MESH_TOKEN_KEY", secrets.token_urlsafe(48))
mesh_auth.configure("test", Path("."))


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats"), port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_settings(nats_server: NatsServer) -> NatsSettings:
    return NatsSettings(url=nats_server.url, connect_timeout_s=5.0)


@pytest.fixture(scope="session")
def _moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_endpoint(_moto_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    # moto accepts any credentials; setting them keeps boto3 from looking at the machine's own
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return _moto_server


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        pytest.skip(f"{POSTGRES_ENV} not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    return url


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def db_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, db_schema: str) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield ""
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{db_schema}" CASCADE')
    finally:
        await conn.close()


# -- images shared by the render, refiner and identity tests ------------------------------------------------------
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may download weights in tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _png(arr) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def astronaut_png() -> bytes:
    """A real face photograph that scikit-image ships."""
    from skimage import data

    return _png(data.astronaut())


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The real face photos beside the checkout (never copied into the repo); skipped when absent."""
    from tests.harness import FACES_DIR

    if not FACES_DIR.is_dir() or not any(FACES_DIR.glob("*/*.jpg")):
        pytest.skip(f"real face photos not present at {FACES_DIR} (set IDLOCK_FACES_DIR)")
    return FACES_DIR


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny randomly initialised SD pipeline (diffusers save_pretrained layout), built offline once."""
    pytest.importorskip("diffusers")
    pytest.importorskip("peft")
    from tests.fakes.tiny_diffusers import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd") / "model")
