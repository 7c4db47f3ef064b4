"""The REST gateway against fake MemoryService / OrchestratorService servicers on real grpc.aio servers (port 0).

The fakes record what reaches them, so each rejection also checks that nothing was forwarded or stored.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from PIL import Image

from gateway.app import create_app
from gateway.models import AuditEntry
from gateway.settings import GatewaySettings
from idlock.settings import DatabaseSettings, MeshSettings, NatsSettings, StorageSettings
from idlock.v1 import common_pb2, memory_service_pb2, memory_service_pb2_grpc
from idlock.v1 import orchestrator_service_pb2 as orch_pb2
from idlock.v1 import orchestrator_service_pb2_grpc as orch_grpc

PASSWORD = "correct horse battery staple"


def _now() -> Timestamp:
    ts = Timestamp()
    ts.GetCurrentTime()
    return ts


# ---- fake mesh services ------------------------------------------------------------------------------------


class FakeMemory(memory_service_pb2_grpc.MemoryServiceServicer):
    def __init__(self) -> None:
        self.characters: dict[str, memory_service_pb2.Character] = {}
        self.created: list[memory_service_pb2.CreateCharacterRequest] = []
        self.deleted: list[str] = []
        self.episodes: dict[str, list[memory_service_pb2.Episode]] = {}
        self.by_request: dict[str, str] = {}

    async def CreateCharacter(self, request, context):
        self.created.append(request)
        if request.name == "quota":
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "character quota of 3 reached")
        if request.name == "noface":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no face found in reference 1")
        if not request.consent_given:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "consent is required")
        if request.request_id in self.by_request:
            return memory_service_pb2.CreateCharacterResponse(
                character=self.characters[self.by_request[request.request_id]]
            )
        cid = "chr_" + uuid.uuid4().hex[:12]
        c = memory_service_pb2.Character(
            id=cid,
            owner_id=request.owner_id,
            name=request.name,
            description=request.description,
            consent_given=True,
            consent_at=_now(),
            status=memory_service_pb2.CHARACTER_STATUS_READY,
            encoder="fake",
            semantic_vector_id="vec_" + cid,
            created_at=_now(),
            updated_at=_now(),
        )
        self.characters[cid] = c
        self.by_request[request.request_id] = cid
        quality = [common_quality(i) for i in range(len(request.reference_images))]
        return memory_service_pb2.CreateCharacterResponse(character=c, reference_quality=quality)

    def _owned(self, character_id: str, owner_id: str) -> memory_service_pb2.Character | None:
        c = self.characters.get(character_id)
        if c is None or (owner_id and c.owner_id != owner_id):
            return None
        return c

    async def GetCharacter(self, request, context):
        c = self._owned(request.character_id, request.owner_id)
        if c is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"character {request.character_id} not found")
        return memory_service_pb2.GetCharacterResponse(character=c)

    async def ListCharacters(self, request, context):
        mine = sorted(
            (c for c in self.characters.values() if c.owner_id == request.owner_id), key=lambda c: c.id
        )
        start = int(request.page.page_token or 0)
        size = request.page.page_size or 20
        page = mine[start : start + size]
        nxt = str(start + size) if start + size < len(mine) else ""
        return memory_service_pb2.ListCharactersResponse(characters=page, next_page_token=nxt)

    async def DeleteCharacter(self, request, context):
        if self._owned(request.character_id, request.owner_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"character {request.character_id} not found")
        del self.characters[request.character_id]
        self.deleted.append(request.character_id)
        return memory_service_pb2.DeleteCharacterResponse(
            report=[memory_service_pb2.StoreErasure(store="vectors", removed=3, ok=True)]
        )

    async def ListHistory(self, request, context):
        if self._owned(request.character_id, request.owner_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"character {request.character_id} not found")
        eps = sorted(self.episodes.get(request.character_id, []), key=lambda e: -e.scene_index)
        start = int(request.page.page_token or 0)
        size = request.page.page_size or 20
        nxt = str(start + size) if start + size < len(eps) else ""
        return memory_service_pb2.ListHistoryResponse(
            episodes=eps[start : start + size], next_page_token=nxt, story_summary="A long journey."
        )


def common_quality(i: int):
    from idlock.v1 import identity_service_pb2

    return identity_service_pb2.ReferenceQuality(index=i, faces_found=1, accepted=True)


class FakeOrchestrator(orch_grpc.OrchestratorServiceServicer):
    def __init__(self) -> None:
        self.jobs: dict[str, orch_pb2.Job] = {}
        self.submitted: list[orch_pb2.SubmitGenerationRequest] = []
        self.by_key: dict[tuple[str, str], str] = {}
        self.feedback: list[orch_pb2.RecordFeedbackRequest] = []
        self.cancelled: list[str] = []

    async def SubmitGeneration(self, request, context):
        self.submitted.append(request)
        key = (request.owner_id, request.idempotency_key)
        if request.idempotency_key and key in self.by_key:
            return orch_pb2.SubmitGenerationResponse(job=self.jobs[self.by_key[key]], created=False)
        jid = "job_" + uuid.uuid4().hex[:12]
        job = orch_pb2.Job(
            id=jid,
            owner_id=request.owner_id,
            character_id=request.character_id,
            prompt=request.prompt,
            pose_image_uri=request.pose_image_uri,
            style_overrides=request.style_overrides,
            options=request.options,
            status=common_pb2.JOB_STATUS_QUEUED,
            created_at=_now(),
            updated_at=_now(),
        )
        self.jobs[jid] = job
        if request.idempotency_key:
            self.by_key[key] = jid
        return orch_pb2.SubmitGenerationResponse(job=job, created=True)

    def _owned(self, job_id: str, owner_id: str) -> orch_pb2.Job | None:
        j = self.jobs.get(job_id)
        return None if j is None or (owner_id and j.owner_id != owner_id) else j

    async def GetJob(self, request, context):
        j = self._owned(request.job_id, request.owner_id)
        if j is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id} not found")
        return orch_pb2.GetJobResponse(job=j)

    async def CancelJob(self, request, context):
        j = self._owned(request.job_id, request.owner_id)
        if j is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id} not found")
        if j.status == common_pb2.JOB_STATUS_SUCCEEDED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"job {j.id} already succeeded")
        j.status = common_pb2.JOB_STATUS_CANCELLED
        self.cancelled.append(j.id)
        return orch_pb2.CancelJobResponse(job=j)

    async def WatchJob(self, request, context):
        j = self._owned(request.job_id, request.owner_id)
        if j is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id} not found")
        j.status = common_pb2.JOB_STATUS_RUNNING
        yield orch_pb2.WatchJobResponse(job=j, event="started", message="rendering")
        yield orch_pb2.WatchJobResponse(job=j, event="progress", message="scoring identity")
        j.status = common_pb2.JOB_STATUS_SUCCEEDED
        j.result_image.CopyFrom(
            common_pb2.ImageRef(uri=self.result_uri, sha256="ab" * 32, mime="image/png", width=64, height=64)
        )
        j.metrics.provider = "compositor"
        j.metrics.idr_after.calibrated = 0.91
        j.metrics.lora_id = f"lora_{j.character_id}_v2"
        yield orch_pb2.WatchJobResponse(job=j, event="succeeded", message="done")
        # anything after the end must not reach the client
        yield orch_pb2.WatchJobResponse(job=j, event="progress", message="AFTER THE END")

    async def RecordFeedback(self, request, context):
        if self._owned(request.job_id, request.owner_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"job {request.job_id} not found")
        self.feedback.append(request)
        return orch_pb2.RecordFeedbackResponse(recorded=True)


class Mesh:
    def __init__(self) -> None:
        self.memory = FakeMemory()
        self.orchestrator = FakeOrchestrator()
        self.servers: list[grpc.aio.Server] = []
        self.addresses: dict[str, str] = {}

    async def start(self) -> None:
        for name, add, servicer in (
            ("memory", memory_service_pb2_grpc.add_MemoryServiceServicer_to_server, self.memory),
            ("orchestrator", orch_grpc.add_OrchestratorServiceServicer_to_server, self.orchestrator),
        ):
            server = grpc.aio.server(options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)])
            add(servicer, server)
            health = HealthServicer()
            await health.set("", health_pb2.HealthCheckResponse.SERVING)
            health_pb2_grpc.add_HealthServicer_to_server(health, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            self.servers.append(server)
            self.addresses[name] = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        for s in self.servers:
            await s.stop(0)


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    m = Mesh()
    await m.start()
    yield m
    await m.stop()


class Api:
    """An httpx client on the app, plus the mesh fakes and the data dir."""

    def __init__(self, client: httpx.AsyncClient, mesh: Mesh, app, data_dir: Path) -> None:
        self.client = client
        self.mesh = mesh
        self.app = app
        self.data_dir = data_dir

    @property
    def gateway(self):
        return self.app.state.gateway

    async def user(self, email: str) -> dict[str, str]:
        r = await self.client.post("/auth/register", json={"email": email, "password": PASSWORD})
        assert r.status_code == 201, r.text
        r = await self.client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    async def audit(self, action: str | None = None) -> list[AuditEntry]:
        rows = await self.gateway.users.audit_entries(limit=1000)
        return [r for r in rows if action is None or r.action == action]


@contextlib.asynccontextmanager
async def running(
    mesh: Mesh, data_dir: Path, nats_url: str = "nats://127.0.0.1:1", **overrides
) -> AsyncIterator[Api]:
    settings = GatewaySettings(
        jwt_secret=None,
        rpc_timeout_s=10,
        health_timeout_s=1,
        max_upload_file_bytes=overrides.pop("max_upload_file_bytes", 200_000),
        max_upload_total_bytes=overrides.pop("max_upload_total_bytes", 600_000),
        **overrides,
    )
    dead = "127.0.0.1:1"
    mesh_settings = MeshSettings(
        identity_addr=dead,
        render_addr=dead,
        refiner_addr=dead,
        trainer_addr=mesh.addresses.get("trainer", dead),
        memory_addr=mesh.addresses["memory"],
        orchestrator_addr=mesh.addresses["orchestrator"],
    )
    resolver_table = {"img.example.com": ["93.184.216.34"], "intranet.example.com": ["10.0.0.8"]}

    async def resolver(host: str, port: int) -> list[str]:
        return resolver_table.get(host, [])

    def pose_server(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "93.184.216.34" and request.headers["host"] == "img.example.com"
        return httpx.Response(200, content=jpeg_with_exif(), headers={"content-type": "image/jpeg"})

    app = create_app(
        settings,
        mesh_settings,
        data_dir=data_dir,
        database=DatabaseSettings(url=""),
        storage=StorageSettings(backend="local", local_root=data_dir / "objects"),
        nats=NatsSettings(url=nats_url, connect_timeout_s=1),
        resolver=resolver,
        pose_transport=httpx.MockTransport(pose_server),
    )
    mesh.orchestrator.result_uri = (data_dir / "objects" / "jobs" / "r.png").resolve().as_uri()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            yield Api(client, mesh, app, data_dir)


@pytest.fixture
async def api(mesh: Mesh, tmp_path: Path) -> AsyncIterator[Api]:
    async with running(mesh, tmp_path) as a:
        yield a


# ---- images ------------------------------------------------------------------------------------------------


def _pixels(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (size, size, 3), dtype=np.uint8)


def jpeg_with_exif(seed: int = 0, size: int = 64) -> bytes:
    img = Image.fromarray(_pixels(seed, size))
    exif = Image.Exif()
    exif[0x010F] = "SpyCamMaker"  # Make
    exif[0x0110] = "SecretModel"  # Model
    exif[0x0131] = "TrackingSoftware"  # Software
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=90)
    data = buf.getvalue()
    assert b"SpyCamMaker" in data
    return data


def png_with_text(seed: int = 1) -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "home address: 1 Secret Lane")
    buf = io.BytesIO()
    Image.fromarray(_pixels(seed)).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def files(*blobs: tuple[str, bytes, str]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", b) for b in blobs]


def form(consent: str = "true", name: str = "Arya") -> dict[str, str]:
    return {"name": name, "description": "a young fighter", "consent": consent}


async def make_character(api: Api, headers: dict[str, str]) -> str:
    r = await api.client.post(
        "/api/v1/characters",
        data=form(),
        files=files(("a.jpg", jpeg_with_exif(), "image/jpeg")),
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return r.json()["character_id"]


def assert_error(r: httpx.Response, status: int, code: str, *fragments: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    for f in fragments:
        assert f in body["error"]["message"], body
    return body


# ---- auth --------------------------------------------------------------------------------------------------


async def test_register_login_jwt_and_api_keys(api: Api) -> None:
    c = api.client
    r = await c.post("/auth/register", json={"email": "Alice@Example.com", "password": PASSWORD})
    # the first account is not an administrator (operators make those: `idlock admin create`)
    assert r.status_code == 201 and r.json()["email"] == "alice@example.com" and r.json()["is_admin"] is False
    assert r.headers["cache-control"] == "no-store"
    user_id = r.json()["user_id"]
    r = await c.post("/auth/register", json={"email": "bob@example.com", "password": PASSWORD})
    assert r.json()["is_admin"] is False

    assert_error(
        await c.post("/auth/register", json={"email": "alice@example.com", "password": PASSWORD}),
        409,
        "already_exists",
        "alice@example.com",
    )
    assert_error(
        await c.post("/auth/register", json={"email": "carol@example.com", "password": "short"}),
        400,
        "weak_password",
        "at least",
    )
    assert_error(
        await c.post("/auth/register", json={"email": "not-an-email", "password": PASSWORD}),
        400,
        "invalid_argument",
        "email",
    )
    assert_error(
        await c.post("/auth/register", json={"password": PASSWORD}), 400, "invalid_argument", "email (body)"
    )

    bad = await c.post("/auth/login", json={"email": "alice@example.com", "password": "wrong password!"})
    unknown = await c.post("/auth/login", json={"email": "nobody@example.com", "password": PASSWORD})
    assert_error(bad, 401, "unauthenticated", "invalid email or password")
    assert bad.json() == unknown.json()

    r = await c.post("/auth/login", json={"email": "ALICE@example.com", "password": PASSWORD})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    token = r.json()["access_token"]
    assert r.json()["token_type"] == "bearer" and r.json()["expires_in"] == api.gateway.settings.jwt_expiry_s
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await c.get("/api/v1/characters", headers=bearer)).status_code == 200

    r = await c.get("/api/v1/characters")
    assert_error(r, 401, "unauthenticated", "authentication required")
    assert r.headers["www-authenticate"] == "Bearer"
    assert_error(
        await c.get("/api/v1/characters", headers={"Authorization": "Bearer nope"}), 401, "unauthenticated"
    )

    # a forged unsigned token for the admin is refused
    def b64(o: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + 600, "iss": "idlock-gateway"}
    forged = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert_error(
        await c.get("/api/v1/characters", headers={"Authorization": f"Bearer {forged}"}),
        401,
        "unauthenticated",
        "not accepted",
    )

    # API keys: shown once, work as X-API-Key, stored hashed, revocable
    r = await c.post("/auth/api-keys", json={"name": "render farm"}, headers=bearer)
    assert r.status_code == 201, r.text
    key, key_id = r.json()["api_key"], r.json()["api_key_id"]
    assert (await c.get("/api/v1/characters", headers={"X-API-Key": key})).status_code == 200
    listed = (await c.get("/auth/api-keys", headers=bearer)).json()  # keys are managed with a password token
    assert [k["api_key_id"] for k in listed] == [key_id] and "api_key" not in listed[0]
    raw = (api.data_dir / "gateway.sqlite3").read_bytes()
    assert key.encode() not in raw and key.rsplit("_", 1)[-1].encode() not in raw
    assert_error(await c.get("/api/v1/characters", headers={"X-API-Key": key + "x"}), 401, "unauthenticated")
    assert (await c.delete(f"/auth/api-keys/{key_id}", headers=bearer)).status_code == 204
    assert_error(
        await c.get("/api/v1/characters", headers={"X-API-Key": key}), 401, "unauthenticated", "revoked"
    )

    actions = [e.action for e in await api.audit()]
    assert actions.count("register") == 2 and actions.count("login") == 1


async def test_dev_jwt_secret_persists_across_restarts(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path) as a:
        headers = await a.user("alice@example.com")
    assert (tmp_path / "gateway-jwt-secret").exists()
    async with running(mesh, tmp_path) as b:
        assert (await b.client.get("/api/v1/characters", headers=headers)).status_code == 200


# ---- characters --------------------------------------------------------------------------------------------


async def test_create_character_forwards_reencoded_images_without_metadata(api: Api) -> None:
    alice = await api.user("alice@example.com")
    upload = files(("face.jpg", jpeg_with_exif(), "image/jpeg"), ("side.png", png_with_text(), "image/png"))
    r = await api.client.post("/api/v1/characters", data=form(), files=upload, headers=alice)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (
        body["character_id"].startswith("chr_")
        and body["semantic_vector_id"] == "vec_" + body["character_id"]
    )
    assert body["status"] == "ready"

    (req,) = api.mesh.memory.created
    assert req.consent_given and req.name == "Arya" and req.owner_id.startswith("usr_")
    assert len(req.reference_images) == 2
    for image in req.reference_images:
        data = image.data
        assert b"SpyCamMaker" not in data and b"Exif" not in data and b"Secret Lane" not in data
        with Image.open(io.BytesIO(data)) as im:
            assert len(im.getexif()) == 0 and not im.info.get("exif") and "Comment" not in im.info
            assert im.size == (64, 64)
    with Image.open(io.BytesIO(req.reference_images[0].data)) as im:
        assert im.format == "JPEG"
    with Image.open(io.BytesIO(req.reference_images[1].data)) as im:
        assert im.format == "PNG"
        assert np.array_equal(np.asarray(im.convert("RGB")), _pixels(1))  # lossless stays lossless

    cid = body["character_id"]
    got = (await api.client.get(f"/api/v1/characters/{cid}", headers=alice)).json()
    assert got["name"] == "Arya" and got["consent_given"] is True and got["consent_at"]
    listed = (await api.client.get("/api/v1/characters", headers=alice)).json()
    assert [i["character_id"] for i in listed["items"]] == [cid] and listed["next_page_token"] is None
    (entry,) = await api.audit("character_create")
    assert entry.resource_id == cid and entry.user_id == req.owner_id


async def test_a_page_larger_than_the_limit_gives_the_limit(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path, page_size_max=2) as api:
        alice = await api.user("alice@example.com")
        for _ in range(3):
            await make_character(api, alice)
        page = await api.client.get("/api/v1/characters?page_size=50", headers=alice)
        assert page.status_code == 200 and len(page.json()["items"]) == 2 and page.json()["next_page_token"]
        schema = (await api.client.get("/openapi.json")).json()
        register = schema["components"]["schemas"]["Registration"]["properties"]["password"]
        assert register["minLength"] == api.gateway.settings.password_min_length


async def test_characters_list_is_paginated(api: Api) -> None:
    alice = await api.user("alice@example.com")
    ids = sorted([await make_character(api, alice) for _ in range(3)])
    first = (await api.client.get("/api/v1/characters?page_size=2", headers=alice)).json()
    assert len(first["items"]) == 2 and first["next_page_token"]
    second = (
        await api.client.get(
            f"/api/v1/characters?page_size=2&page_token={first['next_page_token']}", headers=alice
        )
    ).json()
    assert [i["character_id"] for i in first["items"] + second["items"]] == ids
    assert second["next_page_token"] is None
    assert_error(
        await api.client.get("/api/v1/characters?page_size=0", headers=alice),
        400,
        "invalid_argument",
        "page_size (query)",
    )


@pytest.mark.parametrize(
    ("case", "status", "code", "fragment"),
    [
        ("no_consent", 400, "invalid_argument", "consent"),
        ("consent_missing", 400, "invalid_argument", "consent (body): Field required"),
        ("six_images", 400, "invalid_argument", "at most 5 reference images"),
        ("no_images", 400, "invalid_argument", "at least one reference image"),
        ("not_an_image", 400, "invalid_argument", "image 2 (notes.txt) is not an image"),
        ("truncated", 400, "invalid_argument", "truncated"),
        ("bomb", 400, "invalid_argument", "decompression bomb"),
        ("oversized_file", 413, "payload_too_large", "image 1 (big.png) is"),
        ("oversized_total", 413, "payload_too_large", "total"),
        ("huge_body", 413, "payload_too_large", "larger than the limit"),
        ("no_name", 400, "invalid_argument", "name (body)"),
    ],
)
async def test_bad_character_uploads_are_refused_and_nothing_is_forwarded(
    api: Api, case: str, status: int, code: str, fragment: str
) -> None:
    alice = await api.user("alice@example.com")
    good = ("a.jpg", jpeg_with_exif(), "image/jpeg")
    data, upload = form(), files(good)
    if case == "no_consent":
        data = form(consent="false")
    elif case == "consent_missing":
        data.pop("consent")
    elif case == "six_images":
        upload = files(*[good] * 6)
    elif case == "no_images":
        upload = []
    elif case == "not_an_image":
        upload = files(good, ("notes.txt", b"hello, I am not a picture", "image/png"))
    elif case == "truncated":
        upload = files(("cut.jpg", jpeg_with_exif()[:300], "image/jpeg"))
    elif case == "bomb":
        bomb = io.BytesIO()
        Image.new("1", (8000, 6000)).save(bomb, format="PNG")  # 48 Mpx in a few KB
        assert len(bomb.getvalue()) < 100_000
        upload = files(("bomb.png", bomb.getvalue(), "image/png"))
    elif case == "oversized_file":
        noise = io.BytesIO()
        Image.fromarray(_pixels(3, 300)).save(noise, format="PNG")
        assert len(noise.getvalue()) > 200_000
        upload = files(("big.png", noise.getvalue(), "image/png"))
    elif case == "oversized_total":
        blob = io.BytesIO()
        Image.fromarray(_pixels(4, 220)).save(blob, format="PNG")
        assert 120_000 < len(blob.getvalue()) <= 200_000
        upload = files(*[("p.png", blob.getvalue(), "image/png")] * 5)
    elif case == "huge_body":
        upload = files(("blob.png", b"\x89PNG" + b"\0" * 2_000_000, "image/png"))
    elif case == "no_name":
        data.pop("name")
    r = await api.client.post("/api/v1/characters", data=data, files=upload, headers=alice)
    assert_error(r, status, code, fragment)
    assert api.mesh.memory.created == []
    assert await api.audit("character_create") == []


async def test_streamed_body_over_the_limit_is_413_without_content_length(api: Api) -> None:
    alice = await api.user("alice@example.com")
    boundary = "xyzzy"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nArya\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="consent"\r\n\r\ntrue\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    async def chunks():
        yield head
        for _ in range(40):  # 2.5 MB, more than 600 kB + 1 MiB
            yield b"\0" * 64_000

    r = await api.client.post(
        "/api/v1/characters",
        content=chunks(),
        headers={**alice, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "payload_too_large", "larger than the limit")
    assert api.mesh.memory.created == []


async def test_image_field_may_be_named_with_brackets(api: Api) -> None:
    alice = await api.user("alice@example.com")
    upload = [
        ("image[]", ("a.jpg", jpeg_with_exif(), "image/jpeg")),
        ("image[]", ("b.png", png_with_text(), "image/png")),
    ]
    r = await api.client.post("/api/v1/characters", data=form(), files=upload, headers=alice)
    assert r.status_code == 201, r.text
    assert len(api.mesh.memory.created[0].reference_images) == 2


async def test_mesh_errors_keep_status_and_message(api: Api) -> None:
    alice = await api.user("alice@example.com")
    one = files(("a.jpg", jpeg_with_exif(), "image/jpeg"))
    r = await api.client.post("/api/v1/characters", data=form(name="noface"), files=one, headers=alice)
    assert_error(r, 409, "failed_precondition", "no face found in reference 1")
    r = await api.client.post("/api/v1/characters", data=form(name="quota"), files=one, headers=alice)
    assert_error(r, 429, "resource_exhausted", "character quota of 3 reached")
    assert await api.audit("character_create") == []


async def test_mesh_down_is_503(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path) as api:
        alice = await api.user("alice@example.com")
        await mesh.stop()
        r = await api.client.get("/api/v1/characters", headers=alice)
        assert_error(r, 503, "unavailable", "memory service is unavailable")


async def test_another_users_character_is_404_like_a_missing_one(api: Api) -> None:
    alice = await api.user("alice@example.com")
    bob = await api.user("bob@example.com")
    cid = await make_character(api, alice)
    expected = {"error": {"code": "not_found", "message": f"character {cid} not found"}}
    for method, path in (
        ("GET", f"/api/v1/characters/{cid}"),
        ("DELETE", f"/api/v1/characters/{cid}"),
        ("GET", f"/api/v1/character/{cid}/history"),
    ):
        r = await api.client.request(method, path, headers=bob)
        assert r.status_code == 404 and r.json() == expected, (method, path, r.text)
    assert (await api.client.get("/api/v1/characters", headers=bob)).json()["items"] == []
    assert api.mesh.memory.deleted == []
    r = await api.client.post(
        "/api/v1/generate", json={"character_id": cid, "prompt": "steal her"}, headers=bob
    )
    assert r.status_code == 404 and r.json() == expected
    assert api.mesh.orchestrator.submitted == []
    missing = await api.client.get("/api/v1/characters/chr_missing", headers=alice)
    assert_error(missing, 404, "not_found", "character chr_missing not found")


async def test_delete_character_and_history(api: Api) -> None:
    alice = await api.user("alice@example.com")
    cid = await make_character(api, alice)
    api.mesh.memory.episodes[cid] = [
        memory_service_pb2.Episode(
            id=f"ep{i}",
            character_id=cid,
            job_id=f"job{i}",
            scene_index=i,
            kind=common_pb2.MEDIA_KIND_IMAGE,
            prompt=f"scene {i}",
            image=common_pb2.ImageRef(uri=f"s3://elsewhere/{i}.png", mime="image/png"),
            idr=common_pb2.IdrScore(
                raw=0.8, calibrated=0.9, verdict=common_pb2.VERDICT_GOLDEN, encoder="fake"
            ),
            tags=common_pb2.StateTags(clothing=["red cloak"], injuries=["scar"] if i > 1 else []),
            created_at=_now(),
        )
        for i in (1, 2, 3)
    ]
    page = (await api.client.get(f"/api/v1/character/{cid}/history?page_size=2", headers=alice)).json()
    # the collection path answers the same as the seed's path
    assert (
        await api.client.get(f"/api/v1/characters/{cid}/history?page_size=2", headers=alice)
    ).json() == page
    assert [e["scene_index"] for e in page["items"]] == [3, 2]
    assert page["items"][0]["idr"] == {"raw": 0.8, "calibrated": 0.9, "verdict": "golden", "encoder": "fake"}
    assert (
        page["items"][0]["tags"]["clothing"] == ["red cloak"] and page["story_summary"] == "A long journey."
    )
    rest = (
        await api.client.get(
            f"/api/v1/character/{cid}/history?page_size=2&page_token={page['next_page_token']}", headers=alice
        )
    ).json()
    assert [e["scene_index"] for e in rest["items"]] == [1] and rest["next_page_token"] is None

    r = await api.client.delete(f"/api/v1/characters/{cid}", headers=alice)
    assert (
        r.status_code == 200 and r.json()["deleted"] is True and r.json()["report"][0]["store"] == "vectors"
    )
    assert api.mesh.memory.deleted == [cid]
    assert_error(await api.client.get(f"/api/v1/characters/{cid}", headers=alice), 404, "not_found")
    (entry,) = await api.audit("character_delete")
    assert entry.resource_id == cid


# ---- generation --------------------------------------------------------------------------------------------


def _sse(text: str) -> list[tuple[str, dict]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = [ln for ln in block.splitlines() if not ln.startswith(":")]
        if not lines:
            continue
        fields = dict(ln.split(": ", 1) for ln in lines)
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_generate_job_lifecycle_with_idempotency_and_events(api: Api) -> None:
    alice = await api.user("alice@example.com")
    cid = await make_character(api, alice)
    body = {
        "character_id": cid,
        "prompt": "Arya fights a dragon on a cliff at sunset",
        "style_overrides": ["worn leather armor"],
        "options": {"video": False, "refine_face": True, "bypass_lora": True},
    }
    headers = {**alice, "Idempotency-Key": "retry-me-1"}
    r = await api.client.post("/api/v1/generate", json=body, headers=headers)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "queued" and r.json()["created"] is True
    job_id = r.json()["job_id"]
    assert r.headers["location"] == f"/api/v1/job/{job_id}"
    again = await api.client.post("/api/v1/generate", json=body, headers=headers)
    assert again.status_code == 202 and again.json()["job_id"] == job_id and again.json()["created"] is False
    sent = api.mesh.orchestrator.submitted
    assert [s.idempotency_key for s in sent] == ["retry-me-1", "retry-me-1"]
    assert sent[0].options.refine_face is True and list(sent[0].style_overrides) == ["worn leather armor"]
    assert sent[0].options.bypass_lora is True  # render without the character's active LoRA
    assert len(await api.audit("job_submit")) == 1

    job = (await api.client.get(f"/api/v1/job/{job_id}", headers=alice)).json()
    assert job["status"] == "queued" and job["character_id"] == cid and job["result"] is None

    r = await api.client.get(f"/api/v1/job/{job_id}/events", headers=alice)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = _sse(r.text)
    assert [e for e, _ in events] == ["status", "started", "progress", "succeeded"]
    assert "AFTER THE END" not in r.text
    final = events[-1][1]["job"]
    assert final["status"] == "succeeded" and final["metrics"]["provider"] == "compositor"
    # a signed download link of the local store, at the address the request came to
    assert final["result"]["image"]["url"].startswith("http://gateway.test/objects/jobs/r.png?user=")

    done = (await api.client.get(f"/api/v1/job/{job_id}", headers=alice)).json()
    assert done["status"] == "succeeded" and done["metrics"]["idr_after"]["calibrated"] == pytest.approx(0.91)
    assert done["metrics"]["lora_version"] == 2 and done["metrics"]["lora_id"].endswith(
        "_v2"
    )  # what rendered it
    # an ended job: the stream is just the snapshot
    assert [
        e for e, _ in _sse((await api.client.get(f"/api/v1/job/{job_id}/events", headers=alice)).text)
    ] == ["status"]

    r = await api.client.post(f"/api/v1/job/{job_id}/feedback", json={"rating": "up"}, headers=alice)
    assert r.status_code == 200 and r.json()["recorded"] is True
    assert api.mesh.orchestrator.feedback[0].rating == orch_pb2.FEEDBACK_RATING_UP
    assert_error(
        await api.client.post(f"/api/v1/job/{job_id}/feedback", json={"rating": "meh"}, headers=alice),
        400,
        "invalid_argument",
        "rating (body)",
    )
    assert_error(
        await api.client.post(f"/api/v1/job/{job_id}/cancel", headers=alice),
        409,
        "failed_precondition",
        "already succeeded",
    )

    second = (await api.client.post("/api/v1/generate", json=body, headers=alice)).json()["job_id"]
    assert second != job_id
    assert api.mesh.orchestrator.submitted[-1].idempotency_key.startswith("auto:")  # safe gRPC retries
    r = await api.client.post(f"/api/v1/job/{second}/cancel", headers=alice)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert [e.resource_id for e in await api.audit("job_cancel")] == [second]


async def test_another_users_job_is_404(api: Api) -> None:
    alice = await api.user("alice@example.com")
    bob = await api.user("bob@example.com")
    cid = await make_character(api, alice)
    job_id = (
        await api.client.post("/api/v1/generate", json={"character_id": cid, "prompt": "x"}, headers=alice)
    ).json()["job_id"]
    expected = {"error": {"code": "not_found", "message": f"job {job_id} not found"}}
    for method, path, payload in (
        ("GET", f"/api/v1/job/{job_id}", None),
        ("POST", f"/api/v1/job/{job_id}/cancel", None),
        ("GET", f"/api/v1/job/{job_id}/events", None),
        ("POST", f"/api/v1/job/{job_id}/feedback", {"rating": "down"}),
    ):
        r = await api.client.request(method, path, json=payload, headers=bob)
        assert r.status_code == 404 and r.json() == expected, (method, path, r.text)
    assert api.mesh.orchestrator.cancelled == [] and api.mesh.orchestrator.feedback == []
    assert_error(
        await api.client.get("/api/v1/job/job_nope", headers=alice),
        404,
        "not_found",
        "job job_nope not found",
    )


async def test_generate_rejections_forward_nothing(api: Api) -> None:
    alice = await api.user("alice@example.com")
    bob = await api.user("bob@example.com")
    cid = await make_character(api, alice)
    c = api.client

    async def submit(body: dict, headers=alice) -> httpx.Response:
        return await c.post("/api/v1/generate", json=body, headers=headers)

    assert_error(
        await submit({"character_id": "chr_unknown", "prompt": "x"}), 404, "not_found", "chr_unknown"
    )
    # an id that is no valid gRPC header value (it rides along to the peers for their log lines): still a 404
    assert_error(
        await submit({"character_id": "\ue2e7\u00eb{", "prompt": "x"}, headers=bob), 404, "not_found"
    )
    assert_error(
        await submit(
            {"character_id": cid, "prompt": "x", "pose_image_url": "https://intranet.example.com/p.png"}
        ),
        400,
        "invalid_argument",
        "pose_image_url",
        "10.0.0.8 is a private",
    )
    assert_error(
        await submit(
            {"character_id": cid, "prompt": "x", "pose_image_url": "https://169.254.169.254/latest"}
        ),
        400,
        "invalid_argument",
        "link-local",
    )
    assert_error(
        await submit({"character_id": cid, "prompt": "x", "pose_image_url": "http://img.example.com/p.png"}),
        400,
        "invalid_argument",
        "https",
    )
    bobs = (
        await c.post("/api/v1/uploads", files={"file": ("p.png", png_with_text(), "image/png")}, headers=bob)
    ).json()
    assert_error(
        await submit({"character_id": cid, "prompt": "x", "pose_image_url": bobs["uri"]}),
        400,
        "invalid_argument",
        "your own uploads",
    )
    assert_error(
        await submit({"character_id": cid}), 400, "invalid_argument", "prompt (body): Field required"
    )
    assert_error(
        await submit({"character_id": cid, "prompt": "x", "options": {"vidoe": True}}),
        400,
        "invalid_argument",
        "options.vidoe (body)",
    )
    r = await c.post(
        "/api/v1/generate", content=b"{not json", headers={**alice, "Content-Type": "application/json"}
    )
    assert_error(r, 400, "invalid_argument", "body: not valid JSON")
    assert_error(
        await c.post(
            "/api/v1/generate",
            json={"character_id": cid, "prompt": "x"},
            headers={**alice, "Idempotency-Key": "has space"},
        ),
        400,
        "invalid_argument",
        "Idempotency-Key",
    )
    assert api.mesh.orchestrator.submitted == []
    assert await api.audit("job_submit") == []
    pose_dir = api.data_dir / "objects" / "uploads"
    assert not any(p.is_file() and "pose" in p.parts for p in pose_dir.rglob("*"))


async def test_pose_references_reach_the_orchestrator_as_own_storage_refs(api: Api) -> None:
    alice = await api.user("alice@example.com")
    cid = await make_character(api, alice)
    c = api.client
    up = await c.post(
        "/api/v1/uploads", files={"file": ("pose.jpg", jpeg_with_exif(7), "image/jpeg")}, headers=alice
    )
    assert up.status_code == 201, up.text
    stored = await c.get(up.json()["url"])  # the signed link: no credentials needed
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/jpeg"
    assert b"SpyCamMaker" not in stored.content
    r = await c.post(
        "/api/v1/generate",
        json={"character_id": cid, "prompt": "x", "pose_image_url": up.json()["uri"]},
        headers=alice,
    )
    assert r.status_code == 202, r.text
    r = await c.post(
        "/api/v1/generate",
        json={"character_id": cid, "prompt": "y", "pose_image_url": "https://img.example.com/pose.jpg"},
        headers=alice,
    )
    assert r.status_code == 202, r.text
    first, second = api.mesh.orchestrator.submitted
    assert first.pose_image_uri == up.json()["uri"]
    user_id = first.owner_id
    fetched = api.gateway.store.key_from_uri(second.pose_image_uri)
    assert fetched.startswith(f"uploads/{user_id}/pose/")
    assert b"SpyCamMaker" not in await api.gateway.store.get(fetched)
    assert_error(
        await c.post(
            "/api/v1/uploads", files={"file": ("x.txt", b"plain text", "text/plain")}, headers=alice
        ),
        400,
        "invalid_argument",
        "not an image",
    )


# ---- limits and admin --------------------------------------------------------------------------------------


async def test_rate_limit_answers_429_with_retry_after(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path, rate_limit_burst=3, rate_limit_per_minute=2) as api:
        alice = await api.user("alice@example.com")
        bob = await api.user("bob@example.com")
        codes = [(await api.client.get("/api/v1/characters", headers=alice)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = await api.client.get("/api/v1/characters", headers=alice)
        body = assert_error(r, 429, "rate_limited", "too many requests")
        assert int(r.headers["retry-after"]) >= 1 and body["error"]["message"]
        assert (await api.client.get("/api/v1/characters", headers=bob)).status_code == 200  # per user


async def test_generate_has_its_own_tighter_limit(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path, generate_rate_limit_burst=1, generate_rate_limit_per_minute=1) as api:
        alice = await api.user("alice@example.com")
        cid = await make_character(api, alice)
        body = {"character_id": cid, "prompt": "x"}
        assert (await api.client.post("/api/v1/generate", json=body, headers=alice)).status_code == 202
        r = await api.client.post("/api/v1/generate", json=body, headers=alice)
        assert_error(r, 429, "rate_limited", "generation requests")
        assert r.headers["retry-after"] == "60"
        assert len(api.mesh.orchestrator.submitted) == 1


async def test_auth_endpoints_are_limited_per_ip(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path, auth_rate_limit_burst=2, auth_rate_limit_per_minute=1) as api:
        creds = {"email": "x@example.com", "password": "wrong password"}
        codes = [(await api.client.post("/auth/login", json=creds)).status_code for _ in range(3)]
        assert codes == [401, 401, 429]


async def test_admin_endpoints(api: Api, nats_server) -> None:
    alice = await api.user("alice@example.com")  # the first user, and not an administrator
    await api.gateway.users.create_admin("root@example.com", PASSWORD)  # what `idlock admin create` runs
    r = await api.client.post("/auth/login", json={"email": "root@example.com", "password": PASSWORD})
    admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert_error(
        await api.client.get("/api/v1/admin/health", headers=alice),
        403,
        "permission_denied",
        "administrators",
    )
    assert_error(await api.client.get("/api/v1/admin/metrics", headers=alice), 403, "permission_denied")
    assert_error(await api.client.get("/api/v1/admin/health"), 401, "unauthenticated")

    api.gateway.nats_settings = NatsSettings(url=nats_server.url, connect_timeout_s=2)
    r = await api.client.get("/api/v1/admin/health", headers=admin)
    assert r.status_code == 200, r.text
    components = r.json()["components"]
    assert components["memory"] == "SERVING" and components["orchestrator"] == "SERVING"
    assert components["identity"].startswith("UNREACHABLE")
    assert components["nats"] == "SERVING" and components["database"] == "SERVING"
    assert r.json()["status"] == "degraded"

    r = await api.client.get("/api/v1/admin/metrics", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert "idlock_gateway_http_requests_total" in r.text
    assert 'route="/api/v1/admin/health"' in r.text


async def test_registration_never_makes_an_administrator(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path) as api:
        first = await api.user("first@example.com")
        assert_error(await api.client.get("/api/v1/admin/metrics", headers=first), 403, "permission_denied")
        me = await api.client.get("/auth/me", headers=first)
        assert me.json()["is_admin"] is False
        # an operator promotes an existing user; the audit log says an operator did
        principal, created = await api.gateway.users.create_admin(
            "first@example.com", "ignored for a promotion"
        )
        assert principal.is_admin and not created
        assert (await api.client.get("/api/v1/admin/metrics", headers=first)).status_code == 200
        entry = (await api.audit("admin_create"))[0]
        assert entry.user_id is None and entry.details == {"by": "operator", "created": False}


async def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    assert_error(await api.client.get("/api/v1/nope"), 404, "not_found", "no such endpoint")
    assert_error(await api.client.put("/auth/login"), 405, "method_not_allowed")
    # Allow names every method of the path, not only the first route that matched it
    r = await api.client.put("/api/v1/characters/char_x")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "DELETE, GET, PATCH"
    assert (await api.client.patch("/auth/api-keys")).headers["allow"] == "GET, POST"
    r = await api.client.get("/healthz", headers={"X-Request-ID": "abc123"})
    assert r.json() == {"status": "ok"} and r.headers["x-request-id"] == "abc123"
    assert "/api/v1/generate" in (await api.client.get("/openapi.json")).json()["paths"]


async def test_cors_only_for_configured_origins(mesh: Mesh, tmp_path: Path) -> None:
    async with running(mesh, tmp_path, cors_origins=["https://app.example.com"]) as api:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        }
        ok = await api.client.options(
            "/api/v1/generate", headers={"Origin": "https://app.example.com", **preflight}
        )
        assert ok.headers.get("access-control-allow-origin") == "https://app.example.com"
        other = await api.client.options(
            "/api/v1/generate", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in other.headers


async def test_readyz_depends_only_on_the_services_the_gateway_calls() -> None:
    """memory + orchestrator SERVING is ready, whatever render or the trainer do; either of them down is not."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from httpx import ASGITransport, AsyncClient

    from gateway.app import create_app
    from gateway.settings import GatewaySettings
    from idlock.settings import MeshSettings

    servers, addresses = [], {}
    for name in ("memory", "orchestrator"):
        server = grpc.aio.server()
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        servers.append((server, servicer))
        addresses[f"{name}_addr"] = f"127.0.0.1:{port}"
    # every other service points at a closed port
    mesh = MeshSettings(
        **addresses,
        render_addr="127.0.0.1:1",
        identity_addr="127.0.0.1:1",
        refiner_addr="127.0.0.1:1",
        trainer_addr="127.0.0.1:1",
    )
    app = create_app(GatewaySettings(health_timeout_s=1.0), mesh)
    try:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://gw") as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and set(ready.json()["components"]) == {"memory", "orchestrator"}
            await servers[1][1].set("", health_pb2.HealthCheckResponse.NOT_SERVING)
            assert (await client.get("/readyz")).status_code == 503
    finally:
        for server, _ in servers:
            await server.stop(0)
