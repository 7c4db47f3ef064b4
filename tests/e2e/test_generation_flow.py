"""The main job end to end over HTTP, on the local mesh as `idlock up` runs it: real processes, real nats-server,
real gRPC between services. A fake Gemini server (the real google-genai client inside the render service talks to
it) stands in for the paid API where a test needs a slow or countable provider."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import grpc
import httpx
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from idlock import mesh_auth
from idlock.mesh import LocalMesh
from idlock.v1 import memory_service_pb2 as mpb
from idlock.v1 import memory_service_pb2_grpc as mpb_grpc
from tests.fakes.gemini_server import FakeGeminiServer

STORY = [
    "Arya fights a dragon on a cliff at sunset, wearing battle armour and holding a sword",
    "Arya rests at a forest camp at night with a fresh cut on her left cheek",
    "Arya takes off the armour and walks into a tavern",
]
MAX_FILE = 2_000_000


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


ASTRONAUT = _png(skdata.astronaut())


@pytest.fixture(scope="module")
def fake_gemini() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as fake:
        fake.image = ASTRONAUT  # a face, so the identity step has something to score
        yield fake


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, fake_gemini: FakeGeminiServer) -> Iterator[LocalMesh]:
    env = {
        "IDLOCK_RENDER_PROVIDERS": '["compositor","gemini"]',
        "IDLOCK_RENDER_GEMINI_API_KEY": "e2e",
        "IDLOCK_RENDER_GEMINI_BASE_URL": fake_gemini.base_url,
        "IDLOCK_ORCHESTRATOR_ACK_WAIT_S": "3",
        # the fake answers with the reference photo (a near-copy): flagged, not regenerated, so that a job is one
        # provider call here (test_orchestrator_copies.py covers regeneration)
        "IDLOCK_ORCHESTRATOR_NEAR_COPY": "flag",
        "IDLOCK_GATEWAY_MAX_UPLOAD_FILE_BYTES": str(MAX_FILE),
        "IDLOCK_GATEWAY_GENERATE_RATE_LIMIT_PER_MINUTE": "600",
        "IDLOCK_GATEWAY_GENERATE_RATE_LIMIT_BURST": "50",
        # the test polls job status; every scene now also runs the refiner, so polling lasts longer
        "IDLOCK_GATEWAY_RATE_LIMIT_PER_MINUTE": "600",
        "IDLOCK_GATEWAY_RATE_LIMIT_BURST": "100",
    }
    mesh = LocalMesh(tmp_path_factory.mktemp("mesh"), free_ports=True, nats_port=0, extra_env=env)
    with mesh:
        yield mesh


def _client(mesh: LocalMesh, email: str) -> httpx.Client:
    client = httpx.Client(base_url=mesh.components["gateway"].address, timeout=60)
    assert (
        client.post("/auth/register", json={"email": email, "password": "correct horse battery"}).status_code
        == 201
    )
    token = client.post("/auth/login", json={"email": email, "password": "correct horse battery"}).json()
    client.headers["Authorization"] = f"Bearer {token['access_token']}"
    return client


def _create(client: httpx.Client, images: list[tuple[str, bytes]], consent: str = "true") -> httpx.Response:
    files = [("image", (name, data, "application/octet-stream")) for name, data in images]
    return client.post(
        "/api/v1/characters", data={"name": "Arya", "description": "warrior", "consent": consent}, files=files
    )


def _wait(client: httpx.Client, job_id: str, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.get(f"/api/v1/job/{job_id}")
        if r.status_code == 429:  # polled faster than the gateway's rate limit: wait as told
            time.sleep(min(2.0, float(r.headers.get("Retry-After", "0.5"))))
            continue
        job = r.json()
        if job["status"] in ("succeeded", "failed", "cancelled", "needs_more_refs"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s: {job}")


def _stored_characters(mesh: LocalMesh) -> set[str]:
    root = mesh.data_dir / "objects" / "characters"
    return {p.name for p in root.iterdir()} if root.exists() else set()


def test_story_state_ownership_idempotency_and_cancel(mesh: LocalMesh, fake_gemini: FakeGeminiServer) -> None:
    alice = _client(mesh, "alice@example.com")
    created = _create(alice, [("ref.png", ASTRONAUT)])
    assert created.status_code == 201, created.text
    character_id = created.json()["character_id"]
    assert created.json()["status"] == "ready" and created.json()["semantic_vector_id"]

    jobs = []
    for i, prompt in enumerate(STORY, start=1):
        accepted = alice.post("/api/v1/generate", json={"character_id": character_id, "prompt": prompt})
        assert accepted.status_code == 202 and accepted.json()["status"] == "queued"
        job = _wait(alice, accepted.json()["job_id"])
        assert job["status"] == "succeeded", job
        metrics = job["metrics"]
        assert metrics["scene_index"] == i and metrics["provider"] == "compositor"
        assert metrics["provider_label"] == "offline/compositor"
        assert metrics["idr_before"]["calibrated"] >= 0.75 and "raw" in metrics["idr_before"]
        assert set(metrics["step_seconds"]) >= {"context", "render", "score", "state", "record"}
        assert job["result"]["image"]["uri"]
        jobs.append(job)

    history = alice.get(f"/api/v1/character/{character_id}/history").json()["items"]
    assert [e["scene_index"] for e in history] == [3, 2, 1]
    assert all(e["idr"]["calibrated"] >= 0.75 for e in history)
    assert "armour" in history[2]["tags"]["clothing"] and "sword" in history[2]["tags"]["props"]
    assert any("cheek" in t for t in history[1]["tags"]["injuries"])

    # state carried forward: after scene 3 the sword and the cut remain, the armour does not
    alice_id = alice.get("/auth/me").json()["user_id"]
    with grpc.insecure_channel(mesh.components["memory"].address) as ch:  # the test calls as a signed peer
        state = mpb_grpc.MemoryServiceStub(ch).GetCurrentState(
            mpb.GetCurrentStateRequest(character_id=character_id, owner_id=alice_id),
            metadata=[(mesh_auth.METADATA_KEY, mesh_auth.current().token())],
        )
    current = {(i.category, i.name) for i in state.items}
    assert ("props", "sword") in current and any(c == "injuries" and "cheek" in n for c, n in current)
    assert not any(n == "armour" for _, n in current)

    # a second user sees none of it
    bob = _client(mesh, "bob@example.com")
    job_id = jobs[0]["job_id"]
    for method, url in [
        ("GET", f"/api/v1/characters/{character_id}"),
        ("GET", f"/api/v1/character/{character_id}/history"),
        ("DELETE", f"/api/v1/characters/{character_id}"),
        ("GET", f"/api/v1/job/{job_id}"),
        ("POST", f"/api/v1/job/{job_id}/cancel"),
    ]:
        r = bob.request(method, url)
        assert r.status_code == 404, (method, url, r.text)
        assert r.json()["error"]["code"] == "not_found"
    r = bob.post("/api/v1/generate", json={"character_id": character_id, "prompt": "steal her"})
    assert r.status_code == 404

    # idempotent resubmission returns the same job
    body = {"character_id": character_id, "prompt": "Arya drinks at the tavern"}
    first = alice.post("/api/v1/generate", json=body, headers={"Idempotency-Key": "scene-4"})
    again = alice.post("/api/v1/generate", json=body, headers={"Idempotency-Key": "scene-4"})
    assert first.json()["job_id"] == again.json()["job_id"] and again.json()["created"] is False
    # the same key with another body is the client's bug: 422, never silently the first job
    other = alice.post(
        "/api/v1/generate",
        json={**body, "prompt": "Arya leaves the tavern"},
        headers={"Idempotency-Key": "scene-4"},
    )
    assert other.status_code == 422, other.text
    assert (
        other.json()["error"]["code"] == "idempotency_key_reused"
        and "prompt" in other.json()["error"]["message"]
    )
    assert _wait(alice, first.json()["job_id"])["status"] == "succeeded"

    # cancel: a slow render (the fake Gemini answers after 3 s) is cancelled before it is recorded
    fake_gemini.latency_s = 3.0
    try:
        slow = alice.post(
            "/api/v1/generate",
            json={
                "character_id": character_id,
                "prompt": "Arya sleeps",
                "options": {"providers": ["gemini"]},
            },
        ).json()
        cancelled = alice.post(f"/api/v1/job/{slow['job_id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert _wait(alice, slow["job_id"])["status"] == "cancelled"
    finally:
        fake_gemini.latency_s = 0.0
    time.sleep(3.5)  # the cancelled job's render finishes in the background; it must not become an episode
    history = alice.get(f"/api/v1/character/{character_id}/history").json()["items"]
    assert len(history) == 4 and all(e["job_id"] != slow["job_id"] for e in history)


def test_a_worker_killed_mid_render_completes_the_job_once(
    mesh: LocalMesh, fake_gemini: FakeGeminiServer
) -> None:
    carol = _client(mesh, "carol@example.com")
    character_id = _create(carol, [("ref.png", ASTRONAUT)]).json()["character_id"]
    calls_before = fake_gemini.calls
    fake_gemini.latency_s = 4.0
    try:
        job_id = carol.post(
            "/api/v1/generate",
            json={
                "character_id": character_id,
                "prompt": "Arya crosses a river",
                "options": {"providers": ["gemini"]},
            },
        ).json()["job_id"]
        deadline = time.monotonic() + 30
        while fake_gemini.calls == calls_before:  # the render is in flight
            assert time.monotonic() < deadline
            time.sleep(0.05)
        mesh.kill("orchestrator")
        mesh.respawn("orchestrator")
    finally:
        fake_gemini.latency_s = 0.0
    job = _wait(carol, job_id, timeout_s=90)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2
    assert (
        fake_gemini.calls == calls_before + 1
    )  # the redelivered job joined the render instead of paying again
    history = carol.get(f"/api/v1/character/{character_id}/history").json()["items"]
    assert [e["job_id"] for e in history] == [job_id]


def test_bad_input_gets_a_clear_4xx_and_nothing_is_stored(mesh: LocalMesh) -> None:
    dave = _client(mesh, "dave@example.com")
    before = _stored_characters(mesh)
    no_face = _png(np.full((256, 256, 3), 120, np.uint8))
    cases = [
        ("no consent", _create(dave, [("ref.png", ASTRONAUT)], consent="false"), 400, "consent"),
        ("no face", _create(dave, [("ref.png", no_face)]), 409, "no face"),
        ("6 images", _create(dave, [(f"r{i}.png", ASTRONAUT) for i in range(6)]), 400, "5"),
        (
            "not an image",
            _create(dave, [("notes.txt", b"just some text, not a picture")]),
            400,
            "not an image",
        ),
        ("oversized", _create(dave, [("big.png", b"\x89PNG" + b"0" * (MAX_FILE + 10))]), 413, "big.png"),
    ]
    for name, response, status, fragment in cases:
        assert response.status_code == status, (name, response.text)
        error = response.json()["error"]
        assert fragment.lower() in error["message"].lower(), (name, error)
    assert _stored_characters(mesh) == before
    assert dave.get("/api/v1/characters").json()["items"] == []

    character_id = _create(dave, [("ref.png", ASTRONAUT)]).json()["character_id"]
    private = dave.post(
        "/api/v1/generate",
        json={"character_id": character_id, "prompt": "x", "pose_image_url": "https://10.0.0.7/pose.png"},
    )
    assert private.status_code == 400 and "10.0.0.7" in private.json()["error"]["message"]
    unknown = dave.post("/api/v1/generate", json={"character_id": "char_does_not_exist", "prompt": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    jobs_dir = mesh.data_dir / "objects" / "jobs"
    assert json.dumps(dave.get("/api/v1/characters").json()).count(character_id) == 1
    assert not jobs_dir.exists() or all(not p.name.startswith("uploads") for p in jobs_dir.iterdir())
