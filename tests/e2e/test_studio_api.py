"""What the studio stands on, over HTTP against a real local mesh: results fetchable at the URLs the API returns (by
any client, without credentials, and by no one else), a job and its scene showing what they were made from, users'
names, character sheets given at creation and edited later."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from idlock.mesh import LocalMesh
from tests.e2e.conftest import URL_KEY, User, face_photos, sign_up

pytestmark = pytest.mark.slow

STORY = [
    "Mira stands in the castle courtyard wearing armour and holding a silver sword",
    "Mira fights a bandit in the forest and gets a cut on her left cheek",
    "Mira takes off her armour and rests by the river",
    "Mira walks into the village at dusk",
]
TERMINAL = {"succeeded", "failed", "needs_more_refs", "cancelled"}


def wait_for(user: User, job_id: str, timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = user.client.get(f"/api/v1/job/{job_id}").json()
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end within {timeout_s} s")


def generate(user: User, character_id: str, prompt: str, **options: object) -> dict:
    accepted = user.client.post(
        "/api/v1/generate", json={"character_id": character_id, "prompt": prompt, "options": options}
    )
    assert accepted.status_code == 202, accepted.text
    job = wait_for(user, accepted.json()["job_id"])
    assert job["status"] == "succeeded", job
    return job


def create_character(user: User, photos: list[Path], **form: object) -> dict:
    made = user.client.post(
        "/api/v1/characters",
        data={"consent": "true", **form},
        files=[("image", (p.name, p.read_bytes(), "image/jpeg")) for p in photos],
    )
    assert made.status_code == 201, made.text
    return made.json()


@pytest.fixture(scope="module")
def story(studio_mesh: LocalMesh, faces_dir: Path) -> dict:
    base = studio_mesh.components["gateway"].address
    user = sign_up(base, "author@example.com", name="Ana Author")
    made = create_character(
        user,
        face_photos(faces_dir),
        name="Mira",
        description="a wandering knight of the northern marches",
        hair="short auburn hair",
        eyes="green",
        distinctive_marks=["scar over the left eyebrow", "freckles"],
        must_keep_traits=["scar over the left eyebrow"],
    )
    assert made["status"] == "ready", made
    jobs = [generate(user, made["character_id"], prompt) for prompt in STORY]
    return {"user": user, "character_id": made["character_id"], "jobs": jobs, "base": base}


def _items(state: dict, category: str) -> dict[str, dict]:
    return {i["name"]: i for i in state[category]}


def test_a_users_name_is_kept_and_shown(story: dict) -> None:
    me = story["user"].client.get("/auth/me")
    assert me.status_code == 200
    assert me.json()["name"] == "Ana Author" and me.json()["email"] == "author@example.com"


def test_the_sheet_given_at_creation_is_stored_and_reaches_the_prompt(story: dict) -> None:
    c = story["user"].client.get(f"/api/v1/characters/{story['character_id']}").json()
    assert c["sheet"]["hair"] == "short auburn hair"
    assert c["sheet"]["distinctive_marks"] == ["scar over the left eyebrow", "freckles"]
    prompt = story["jobs"][0]["context"]["prompt"]
    assert "short auburn hair" in prompt and "scar over the left eyebrow" in prompt
    assert "a wandering knight of the northern marches" in prompt


def test_scene_four_shows_the_state_in_effect_and_what_ended(story: dict) -> None:
    ctx = story["jobs"][3]["context"]
    assert ctx["engine"] == "template" and ctx["cached"] is False
    assert _items(ctx["state"], "props")["silver sword"]["since_scene"] == 1
    assert _items(ctx["state"], "injuries")["cut on left cheek"]["since_scene"] == 2
    assert "armour" not in _items(ctx["state"], "clothing")
    armour = _items(ctx["ended"], "clothing")["armour"]
    assert (armour["since_scene"], armour["until_scene"]) == (1, 3)
    # the composed prompt is the one sent to the renderer: it carries the state and says what ended
    assert "silver sword" in ctx["prompt"] and "cut on left cheek" in ctx["prompt"]
    assert "No longer present" in ctx["prompt"] and "armour" in ctx["prompt"]
    used = {(e["scene_index"], e["reason"]) for e in ctx["episodes"]}
    assert {(3, "recent"), (2, "recent"), (1, "recent")} <= used
    # scene 1 was made from nothing: no state, no earlier scenes
    first = story["jobs"][0]["context"]
    assert all(not v for v in first["state"].values()) and first["episodes"] == []


def test_each_history_item_carries_its_context_and_renderer(story: dict) -> None:
    history = story["user"].client.get(f"/api/v1/characters/{story['character_id']}/history").json()
    by_scene = {e["scene_index"]: e for e in history["items"]}
    assert sorted(by_scene) == [1, 2, 3, 4]
    for i, job in enumerate(story["jobs"], start=1):
        assert by_scene[i]["job_id"] == job["job_id"]
        assert by_scene[i]["context"] == job["context"]
        assert by_scene[i]["provider_label"] == "offline/compositor"
        assert by_scene[i]["near_copy"] is True and by_scene[i]["copy_similarity"] > 0.88


def _urls(story: dict) -> list[tuple[str, str]]:
    client = story["user"].client
    character = client.get(f"/api/v1/characters/{story['character_id']}").json()
    history = client.get(f"/api/v1/characters/{story['character_id']}/history").json()
    refs = [r for r in character["reference_images"] if r]
    refs += [job["result"]["image"] for job in story["jobs"]]
    refs += [e["image"] for e in history["items"] if e["image"]]
    return [(r["url"], r["sha256"]) for r in refs]


def test_every_result_downloads_without_credentials(story: dict) -> None:
    urls = _urls(story)
    assert len(urls) >= 3 + 4 + 4
    with httpx.Client(timeout=30) as anyone:  # no Authorization header: the link itself is the permission
        for url, sha in urls:
            assert url.startswith(story["base"] + "/objects/"), url
            got = anyone.get(url)
            assert got.status_code == 200, (url, got.text)
            assert hashlib.sha256(got.content).hexdigest() == sha
            assert got.headers["content-type"] in ("image/png", "image/jpeg")
            assert got.headers["cache-control"].startswith("private")
            assert got.headers["x-content-type-options"] == "nosniff"


def test_a_range_request_gets_part_of_the_object(story: dict) -> None:
    url, _ = _urls(story)[-1]
    with httpx.Client(timeout=30) as anyone:
        whole = anyone.get(url).content
        part = anyone.get(url, headers={"Range": "bytes=10-109"})
    assert part.status_code == 206
    assert part.content == whole[10:110]
    assert part.headers["content-range"] == f"bytes 10-109/{len(whole)}"


def _sign(key: str, user_id: str, expires: int) -> str:
    """A link's signature as the gateway makes it (the test knows the mesh's key)."""
    return hmac.new(URL_KEY.encode(), f"{key}\n{user_id}\n{expires}".encode(), hashlib.sha256).hexdigest()


def _link(base: str, key: str, user_id: str, expires: int, signature: str) -> str:
    return f"{base}/objects/{key}?" + urlencode({"user": user_id, "expires": expires, "signature": signature})


def test_tampered_expired_and_other_users_links_are_refused(story: dict, studio_mesh: LocalMesh) -> None:
    url, _ = _urls(story)[-1]
    parts = urlsplit(url)
    key = parts.path.removeprefix("/objects/")
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    owner, base = q["user"], story["base"]
    other = sign_up(base, "someone.else@example.com")
    future, past = int(time.time()) + 600, int(time.time()) - 1
    cases = {
        "tampered signature": (_link(base, key, owner, int(q["expires"]), "0" * 64), 403),
        "signature for another key": (_link(base, key + "x", owner, int(q["expires"]), q["signature"]), 403),
        "expiry moved": (_link(base, key, owner, int(q["expires"]) + 60, q["signature"]), 403),
        "expired": (_link(base, key, owner, past, _sign(key, owner, past)), 403),
        # a genuine signature, but for a user who does not own the object
        "another user's object": (
            _link(base, key, other.user_id, future, _sign(key, other.user_id, future)),
            404,
        ),
    }
    with httpx.Client(timeout=30) as anyone:
        assert anyone.get(url).status_code == 200  # the genuine link works
        for what, (link, status) in cases.items():
            got = anyone.get(link)
            assert got.status_code == status, (what, got.text)
            assert got.headers["content-type"].startswith("application/json"), what
            assert got.json()["error"]["message"], what
            if what == "expired":
                assert "expired" in got.json()["error"]["message"]
    # the other user cannot reach the object through the API either
    assert other.client.get(f"/api/v1/job/{story['jobs'][-1]['job_id']}").status_code == 404


def test_editing_the_sheet_changes_the_next_prompt_and_nothing_else_on_bad_input(
    studio_mesh: LocalMesh, faces_dir: Path
) -> None:
    base = studio_mesh.components["gateway"].address
    user = sign_up(base, "editor@example.com")
    photos = face_photos(faces_dir, 2)
    refused = user.client.post(  # a sheet given at creation is checked as the PATCH's is
        "/api/v1/characters",
        data={"consent": "true", "name": "Tomas", "distinctive_marks": [f"mark {i}" for i in range(21)]},
        files=[("image", (p.name, p.read_bytes(), "image/jpeg")) for p in photos],
    )
    assert refused.status_code == 400, refused.text
    assert "distinctive_marks (form)" in refused.json()["error"]["message"]
    assert user.client.get("/api/v1/characters").json()["items"] == []  # nothing was made
    made = create_character(user, photos, name="Tomas", hair="black hair")
    cid = made["character_id"]
    path = f"/api/v1/characters/{cid}"
    first = generate(user, cid, "Tomas reads a letter by candlelight")
    assert "black hair" in first["context"]["prompt"]
    before = user.client.get(path).json()

    bad = {
        "unknown field": {"nickname": "Tom"},
        "unknown sheet field": {"sheet": {"shoe_size": "44"}},
        "oversized sheet text": {"sheet": {"face_description": "x" * 1001}},
        "too many marks": {"sheet": {"distinctive_marks": [f"mark {i}" for i in range(21)]}},
        "empty name": {"name": ""},
        "blank name": {"name": "   "},
        "control character": {"description": "a\x00b"},
    }
    for what, body in bad.items():
        got = user.client.patch(path, json=body)
        assert got.status_code == 400, (what, got.text)
        assert got.json()["error"]["message"], what
    assert user.client.get(path).json()["memory_version"] == before["memory_version"]  # nothing changed
    same = user.client.patch(path, json={"name": None})  # nothing to change: the character as it is
    assert same.status_code == 200 and same.json()["memory_version"] == before["memory_version"]

    stranger = sign_up(base, "stranger@example.com")
    assert stranger.client.patch(path, json={"name": "Mine"}).status_code == 404

    changed = user.client.patch(
        path,
        json={
            "description": "a retired cartographer",
            "sheet": {"hair": "silver hair in a braid", "must_keep_traits": ["round spectacles"]},
        },
    )
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert after["memory_version"] > before["memory_version"]
    assert after["name"] == "Tomas" and after["description"] == "a retired cartographer"
    assert after["sheet"]["hair"] == "silver hair in a braid"
    assert after["sheet"]["must_keep_traits"] == ["round spectacles"]

    # the same request as before: a cached composition of the old sheet must not be reused
    second = generate(user, cid, "Tomas reads a letter by candlelight")
    prompt = second["context"]["prompt"]
    assert "silver hair in a braid" in prompt and "black hair" not in prompt
    assert "round spectacles" in prompt and "a retired cartographer" in prompt
    assert second["context"]["cached"] is False

    cleared = user.client.patch(path, json={"description": ""})
    assert cleared.status_code == 200 and cleared.json()["description"] == ""


def test_the_studio_page_is_served_with_a_strict_policy(studio_mesh: LocalMesh) -> None:
    base = studio_mesh.components["gateway"].address
    page = httpx.get(base + "/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/studio/studio.js"' in page.text
    for asset, kind in (("/studio/studio.js", "javascript"), ("/studio/studio.css", "text/css")):
        got = httpx.get(base + asset, timeout=10)
        assert got.status_code == 200 and kind in got.headers["content-type"]


def test_a_video_result_plays_from_its_link_in_ranges(studio_mesh: LocalMesh, faces_dir: Path) -> None:
    base = studio_mesh.components["gateway"].address
    user = sign_up(base, "director@example.com")
    made = create_character(user, face_photos(faces_dir, 1), name="Ines")
    job = generate(user, made["character_id"], "Ines walks along the harbour", video=True)
    video = job["result"]["video"]
    # the offline renderer's clip is WebM (VP8), which browsers play
    assert video["mime"] == "video/webm" and video["url"].startswith(base + "/objects/")
    with httpx.Client(timeout=30) as player:
        whole = player.get(video["url"])
        assert whole.status_code == 200 and whole.headers["content-type"] == "video/webm"
        assert whole.headers["accept-ranges"] == "bytes"
        assert hashlib.sha256(whole.content).hexdigest() == video["sha256"]
        tail = player.get(video["url"], headers={"Range": "bytes=-1000"})
        assert tail.status_code == 206 and tail.content == whole.content[-1000:]
        beyond = player.get(video["url"], headers={"Range": f"bytes={len(whole.content) + 10}-"})
        assert beyond.status_code == 416
    history = user.client.get(f"/api/v1/characters/{made['character_id']}/history").json()
    assert history["items"][0]["video"]["url"] and history["items"][0]["kind"] == "video"
