"""Deleting a character erases it everywhere: after DELETE, a scan of every store (the data dir's files: SQLite,
the Qdrant store, objects, the NATS store, trainer files, logs; and, on the second backend, every Postgres table
and every S3 object version) finds none of its prompts, its name, its feedback, or its images' hashes. Before the
delete the same scan finds them, so the scan can fail. Run on SQLite + local files and on Postgres + S3 (moto)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from idlock.mesh import LocalMesh
from tests.fakes.gemini_server import FakeGeminiServer
from tests.fakes.groq_server import FakeGroqServer

pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery"


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


ASTRONAUT = skdata.astronaut()
#: the provider's answer: the same face, mirrored, so that it is scored (and collected as golden) without being
#: a copy of the reference
MIRRORED = _png(np.ascontiguousarray(ASTRONAUT[:, ::-1]))


@pytest.fixture(scope="module")
def fake_gemini() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as fake:
        fake.image = MIRRORED
        yield fake


@pytest.fixture(scope="module")
def fake_groq() -> Iterator[FakeGroqServer]:
    """The prompt formatter: memory caches what it answers (the prompts, in NATS KV), which erasure must find."""
    with FakeGroqServer() as fake:
        fake.echo_user()
        yield fake


def _env(fake: FakeGeminiServer, groq: FakeGroqServer) -> dict[str, str]:
    return {
        "IDLOCK_RENDER_PROVIDERS": '["gemini"]',
        "IDLOCK_RENDER_GEMINI_API_KEY": "e2e",
        "IDLOCK_RENDER_GEMINI_BASE_URL": fake.base_url,
        "IDLOCK_MEMORY_GROQ_API_KEY": "e2e",
        "IDLOCK_MEMORY_GROQ_BASE_URL": groq.base_url,
        "IDLOCK_ORCHESTRATOR_NEAR_COPY": "flag",
        "IDLOCK_ORCHESTRATOR_ACK_WAIT_S": "3",
    }


class Needles:
    """What the character leaves behind: text (prompts, name, description, feedback) and image digests."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.name = f"Zephyrine Quill{tag}"
        self.description = f"a cartographer of drowned kingdoms {tag}"
        self.prompts = [
            f"Zephyrine polishes an obsidian astrolabe under a violet comet {tag}",
            f"Zephyrine reads star charts in a lighthouse at dawn {tag}",
        ]
        self.style = f"a cloak stitched with moonmoth silk {tag}"
        self.comment = f"the astrolabe glints like frost {tag}"
        self.digests: set[str] = set()

    def texts(self) -> list[str]:
        return [self.name, self.description, *self.prompts, self.style, self.comment]

    def found_in(self, data: bytes) -> list[str]:
        hits = [t for t in self.texts() if t.encode() in data]
        hits += [f"sha256 {d[:12]}" for d in self.digests if d.encode() in data]
        if hashlib.sha256(data).hexdigest() in self.digests:
            hits.append("an image's bytes")
        return hits


def scan_files(root: Path, needles: Needles) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                hits = needles.found_in(path.read_bytes())
            except OSError:  # a file removed while the scan ran
                continue
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


def _client(mesh: LocalMesh) -> httpx.Client:
    client = httpx.Client(base_url=mesh.components["gateway"].address, timeout=60)
    email = f"erasure-{uuid.uuid4().hex[:8]}@example.com"
    assert client.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
    token = client.post("/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    return client


def _wait_job(client: httpx.Client, job_id: str, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/api/v1/job/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled", "needs_more_refs"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


def _wait(check: Callable[[], dict[str, list[str]]], timeout_s: float = 60.0) -> dict[str, list[str]]:
    """The other services erase on character.deleted, a moment after the DELETE answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _until_found(scan: Callable[[], dict[str, list[str]]], *prefixes: str) -> dict[str, list[str]]:
    """A scan once it finds something under each of `prefixes`: the prompt cache is written after the context
    answers, and the trainer collects a golden image (with its prompt, asked of memory) after the job ends."""
    deadline = time.monotonic() + 20
    while True:
        found = scan()
        missing = [p for p in prefixes if not any(k.startswith(p) for k in found)]
        if not missing or time.monotonic() > deadline:
            assert not missing, (missing, found)
            return found
        time.sleep(0.3)


def _story(client: httpx.Client, needles: Needles) -> tuple[str, list[str]]:
    made = client.post(
        "/api/v1/characters",
        data={"name": needles.name, "description": needles.description, "consent": "true"},
        files=[("image", ("ref.png", _png(ASTRONAUT), "image/png"))],
    )
    assert made.status_code == 201, made.text
    cid = made.json()["character_id"]
    character = client.get(f"/api/v1/characters/{cid}").json()
    needles.digests |= {r["sha256"] for r in character["reference_images"] if r}
    jobs = []
    for i, prompt in enumerate(needles.prompts):
        body = {"character_id": cid, "prompt": prompt, "style_overrides": [needles.style] if i == 0 else []}
        sent = client.post("/api/v1/generate", json=body)
        assert sent.status_code == 202, sent.text
        job = _wait_job(client, sent.json()["job_id"])
        assert job["status"] == "succeeded", job
        needles.digests.add(job["result"]["image"]["sha256"])
        jobs.append(job["job_id"])
    rated = client.post(f"/api/v1/job/{jobs[0]}/feedback", json={"rating": "up", "comment": needles.comment})
    assert rated.status_code in (200, 201, 202), rated.text
    return cid, jobs


def _erase(client: httpx.Client, cid: str, jobs: list[str]) -> None:
    erased = client.delete(f"/api/v1/characters/{cid}")
    assert erased.status_code == 200 and erased.json()["deleted"] is True, erased.text
    stores = {r["store"] for r in erased.json()["report"]}
    assert {"database", "vectors", "objects", "prompt_cache", "events"} <= stores
    assert client.get(f"/api/v1/characters/{cid}").status_code == 404
    deadline = time.monotonic() + 60
    for job_id in jobs:  # the orchestrator tombstones them on character.deleted
        while client.get(f"/api/v1/job/{job_id}").status_code != 404:
            assert time.monotonic() < deadline, f"job {job_id} still answers after the erasure"
            time.sleep(0.3)
    listed = (
        client.get("/api/v1/jobs").json()["items"] if client.get("/api/v1/jobs").status_code == 200 else []
    )
    assert not [j for j in listed if j["job_id"] in jobs]


def test_erasure_leaves_nothing_on_sqlite_and_files(
    tmp_path: Path, fake_gemini: FakeGeminiServer, fake_groq: FakeGroqServer
) -> None:
    needles = Needles()
    with (
        LocalMesh(
            tmp_path / "mesh", free_ports=True, nats_port=0, extra_env=_env(fake_gemini, fake_groq)
        ) as mesh,
        contextlib.closing(_client(mesh)) as client,
    ):
        cid, jobs = _story(client, needles)
        before = _until_found(lambda: scan_files(mesh.data_dir, needles), "nats/", "trainer.sqlite3")
        # the scan sees what it looks for: the prompts in the databases (the trainer's golden image among
        # them) and in the prompt cache's stream files, the images in the object store
        assert any(".sqlite3" in p for p in before), before
        assert any(p.startswith("objects/") for p in before), before
        assert any(p.startswith("vectors/") for p in before), before  # the episodes' texts in the Edge shards
        _erase(client, cid, jobs)
        left = _wait(lambda: scan_files(mesh.data_dir, needles))
    assert left == {}, left


@pytest.mark.postgres
def test_erasure_leaves_nothing_on_postgres_and_s3(
    tmp_path: Path,
    fake_gemini: FakeGeminiServer,
    fake_groq: FakeGroqServer,
    postgres_url: str,
    s3_endpoint: str,
) -> None:
    import asyncio

    import boto3

    needles = Needles()
    bucket = f"erasure-{uuid.uuid4().hex[:10]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    memory_schema = f"memory_{uuid.uuid4().hex[:8]}"
    env = {
        **_env(fake_gemini, fake_groq),
        "IDLOCK_DATABASE_URL": postgres_url,
        "IDLOCK_MEMORY_DB_SCHEMA": memory_schema,
        "IDLOCK_STORAGE_BACKEND": "s3",
        "IDLOCK_STORAGE_S3_ENDPOINT_URL": s3_endpoint,
        "IDLOCK_STORAGE_S3_BUCKET": bucket,
    }
    schemas = [memory_schema, "orchestrator", "trainer", "gateway", "identity", "render", "refiner"]

    def scan_s3() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
        for page in pages:
            for v in page.get("Versions", []):
                body = s3.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
                hits = needles.found_in(body)
                if hits:
                    found[f"s3://{bucket}/{v['Key']}?versionId={v['VersionId']}"] = hits
        return found

    def scan_postgres() -> dict[str, list[str]]:
        return asyncio.run(_scan_postgres(postgres_url, schemas, needles))

    def scan_all() -> dict[str, list[str]]:
        return {**scan_files(mesh.data_dir, needles), **scan_s3(), **scan_postgres()}

    with (
        LocalMesh(tmp_path / "mesh", free_ports=True, nats_port=0, extra_env=env) as mesh,
        contextlib.closing(_client(mesh)) as client,
    ):
        cid, jobs = _story(client, needles)
        before = _until_found(scan_all, "nats/", "pg:trainer.")
        assert any(k.startswith("s3://") for k in before), before
        assert any(k.startswith("pg:") for k in before), before
        _erase(client, cid, jobs)
        left = _wait(scan_all)
    assert left == {}, left


async def _scan_postgres(url: str, schemas: list[str], needles: Needles) -> dict[str, list[str]]:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    found: dict[str, list[str]] = {}
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema = ANY($1::text[]) AND table_type = 'BASE TABLE'",
            schemas,
        )
        for t in tables:
            name = f'"{t["table_schema"]}"."{t["table_name"]}"'
            for row in await conn.fetch(f"SELECT CAST(x AS text) AS r FROM {name} x"):
                hits = needles.found_in(row["r"].encode())
                if hits:
                    found.setdefault(f"pg:{t['table_schema']}.{t['table_name']}", []).extend(hits)
    finally:
        await conn.close()
    return found
