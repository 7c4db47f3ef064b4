"""Video jobs end to end over HTTP on the local mesh: images and Veo videos (the real google-genai client in the
render service talks to the fake Veo server) in one story, with per-frame IDR, video episodes, the state of a
video's last frame carried into the next image's prompt, and one consolidation after the third video."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator

import httpx
import nats
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from idlock import subjects
from idlock.mesh import LocalMesh
from idlock.provenance import DIGITAL_SOURCE_TYPE, read_image_mark, read_video_mark
from idlock.v1 import events_pb2
from tests.fakes.gemini_server import FakeGeminiServer


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


ASTRONAUT = _png(skdata.astronaut())

# image, video, video, video, image: consolidation (5 images / 3 videos, mixed by weight) fires on the third video
STORY = [
    ("image", "Arya stands at the city gate at dawn", ""),
    ("video", "Arya rides through a forest at night", "We ride before the moon sets."),
    ("video", "Arya crosses a river on horseback", ""),
    ("video", "Arya puts on a red cloak and picks up a shield on the beach", "Now I am ready."),
    ("image", "Arya looks out over the sea at sunset", ""),
]


@pytest.fixture(scope="module")
def fake_veo() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as fake:
        fake.image = ASTRONAUT
        fake.video_seconds = 2.0
        yield fake


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory, fake_veo: FakeGeminiServer) -> Iterator[LocalMesh]:
    env = {
        "IDLOCK_RENDER_PROVIDERS": '["gemini","compositor"]',
        "IDLOCK_RENDER_VIDEO_PROVIDERS": '["veo","compositor"]',
        "IDLOCK_RENDER_GEMINI_API_KEY": "e2e",
        "IDLOCK_RENDER_GEMINI_BASE_URL": fake_veo.base_url,
        "IDLOCK_RENDER_VEO_POLL_INTERVAL_S": "0.05",
        "IDLOCK_ORCHESTRATOR_ACK_WAIT_S": "5",
        # the fake answers with the reference photo (a near-copy): flagged, so regenerations here are the videos'
        "IDLOCK_ORCHESTRATOR_NEAR_COPY": "flag",
        "IDLOCK_GATEWAY_GENERATE_RATE_LIMIT_PER_MINUTE": "600",
        "IDLOCK_GATEWAY_GENERATE_RATE_LIMIT_BURST": "50",
    }
    mesh = LocalMesh(tmp_path_factory.mktemp("mesh"), free_ports=True, nats_port=0, extra_env=env)
    with mesh:
        yield mesh


def _client(mesh: LocalMesh) -> httpx.Client:
    client = httpx.Client(base_url=mesh.components["gateway"].address, timeout=60)
    creds = {"email": "vera@example.com", "password": "correct horse battery"}
    assert client.post("/auth/register", json=creds).status_code == 201
    token = client.post("/auth/login", json=creds).json()
    client.headers["Authorization"] = f"Bearer {token['access_token']}"
    return client


def _wait(client: httpx.Client, job_id: str, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.get(f"/api/v1/job/{job_id}")
        if r.status_code == 429:  # the gateway's per-user rate limit
            time.sleep(1.0)
            continue
        assert r.status_code == 200, r.text
        job = r.json()
        if job["status"] in ("succeeded", "failed", "cancelled", "needs_more_refs"):
            return job
        time.sleep(0.4)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s: {job}")


async def _consolidations(url: str) -> list[events_pb2.MemoryConsolidated]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(subjects.MEMORY_CONSOLIDATED, ordered_consumer=True)
        out = []
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                return out
            ev = events_pb2.MemoryConsolidated()
            ev.ParseFromString(msg.data)
            out.append(ev)
    finally:
        await nc.close()


def test_story_of_images_and_videos(mesh: LocalMesh, fake_veo: FakeGeminiServer) -> None:
    client = _client(mesh)
    created = client.post(
        "/api/v1/characters",
        data={"name": "Arya", "description": "warrior", "consent": "true"},
        files=[("image", ("ref.png", ASTRONAUT, "application/octet-stream"))],
    )
    assert created.status_code == 201, created.text
    character_id = created.json()["character_id"]

    jobs = []
    for i, (kind, prompt, dialogue) in enumerate(STORY, start=1):
        options = {"video": True, "video_duration_s": 2, "dialogue": dialogue} if kind == "video" else {}
        accepted = client.post(
            "/api/v1/generate", json={"character_id": character_id, "prompt": prompt, "options": options}
        )
        assert accepted.status_code == 202, accepted.text
        job = _wait(client, accepted.json()["job_id"])
        assert job["status"] == "succeeded", job
        m = job["metrics"]
        assert m["scene_index"] == i
        if kind == "video":
            assert m["provider"] == "veo" and m["provider_label"].startswith("veo/")
            assert job["result"]["video"]["mime"] == "video/mp4" and job["result"]["video"]["url"]
            assert job["provider_operation"] and "/operations/" in job["provider_operation"]
            assert m["frames_scored"] >= 2 and len(m["frame_idrs"]) == m["frames_scored"]
            assert 0 < m["frame_idr_min"] <= m["frame_idr_mean"] <= 1
            assert m["video_duration_s"] > 1.5
            assert set(m["step_seconds"]) >= {"context", "render", "score", "regenerate", "state", "record"}
            # the clip says it was made by AI, inside the file (a manifest box players skip)
            clip = client.get(job["result"]["video"]["url"]).content
            mark = read_video_mark(clip)
            assert mark is not None and mark["ai_generated"] and mark["job_id"] == job["job_id"]
        else:
            assert m["provider"] == "gemini" and not job["result"]["video"]
            mark = read_image_mark(client.get(job["result"]["image"]["url"]).content)
            assert mark is not None and mark["xmp_digital_source_type"] == DIGITAL_SOURCE_TYPE
        jobs.append(job)
    # one paid operation per video (plus one per regeneration, when a video scored low)
    regenerated = sum(1 for j in jobs if j["metrics"].get("regenerated"))
    assert fake_veo.veo_creations == 3 + regenerated

    history = client.get(f"/api/v1/character/{character_id}/history").json()
    items = sorted(history["items"], key=lambda e: e["scene_index"])
    assert [e["kind"].lower() for e in items] == [k for k, _, _ in STORY]
    assert [e["job_id"] for e in items] == [j["job_id"] for j in jobs]
    v1, v3 = items[1], items[3]
    assert v1["video"]["uri"] and v1["dialogue"] == "We ride before the moon sets." and v1["duration_s"] > 1.5
    assert v1["frame_idrs"] and v1["frame_idrs"][0]["timestamp_s"] == 0.0
    assert "cloak" in " ".join(v3["tags"]["clothing"]) and "shield" in v3["tags"]["props"]
    assert history["story_summary"]  # consolidated, video scenes included
    assert "cloak" in history["story_summary"] or "river" in history["story_summary"].lower()

    # the last video's state (from its last frame) reaches the next image's prompt (as the image API received it)
    sent = [" ".join(r.texts) for r in fake_veo.requests if r.path.endswith(":generateContent")]
    # the first call naming each image scene is its render (later ones may be the refiner's face edits)
    image_prompts = [next(p for p in sent if prompt in p) for kind, prompt, _ in STORY if kind == "image"]
    assert "cloak" not in image_prompts[0] and "cloak" in image_prompts[1] and "shield" in image_prompts[1]

    events = asyncio.run(_consolidations(mesh.components["nats"].address))
    mine = [e for e in events if e.character_id == character_id]
    assert len(mine) == 1 and mine[0].up_to_scene == 4  # the third video (scene 4)
