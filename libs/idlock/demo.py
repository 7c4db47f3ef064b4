"""`idlock demo`: a three-scene story on the local mesh, through the REST gateway as an external client sees it.

Starts NATS + every service + the gateway on free ports, registers a user, creates a character from reference
photos (scikit-image's astronaut unless `--ref` files are given), generates three scenes whose prompts change the
character's state, checks that memory carried the state forward, writes a contact sheet and `report.json`, and
stops the mesh. No keys are needed: without a Gemini key the offline compositor renders, and says so.
With `video=True` (`idlock demo --video`) every scene is a short video (Veo with a key, the compositor's offline clip
without one): IDR is scored on the first frame and one frame a second, reported per frame, and the third video
triggers memory consolidation.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

from idlock.mesh import LocalMesh

STORY = [
    "Arya fights a dragon on a cliff at sunset, wearing battle armour and holding a sword",
    "Arya rests at a forest camp at night with a fresh cut on her left cheek, still holding the sword",
    "Arya takes off the armour and walks into a tavern in a red cloak",
]
DIALOGUE = ["", "This cut is nothing.", "A warm fire at last."]
TERMINAL = {"succeeded", "failed", "cancelled", "needs_more_refs"}


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why."""


@dataclass
class Scene:
    index: int
    prompt: str
    job_id: str = ""
    status: str = ""
    provider: str = ""
    provider_label: str = ""
    idr_raw: float | None = None
    idr_calibrated: float | None = None
    verdict: str = ""
    refined: bool = False
    refine_needed: bool = False
    tags: dict[str, list[str]] = field(default_factory=dict)
    state_source: str = ""
    prompt_engine: str = ""
    seconds: float = 0.0
    image: str = ""
    error: str = ""
    kind: str = "image"
    #: video scenes only
    video: str = ""
    dialogue: str = ""
    video_duration_s: float | None = None
    frames_scored: int = 0
    frame_idr_min: float | None = None
    frame_idr_mean: float | None = None
    #: per scored frame: {"timestamp_s", "face_found", "idr_calibrated"}
    frame_idrs: list[dict[str, Any]] = field(default_factory=list)
    regenerated: bool = False
    #: the result's face against the references (None: nothing compared)
    copy_similarity: float | None = None
    near_copy: bool | None = None
    copy_note: str = ""


def sample_references() -> list[tuple[str, bytes]]:
    """Reference photos that installed packages ship: scikit-image's astronaut (a real photograph)."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="PNG")
    return [("astronaut.png", buf.getvalue())]


def _check(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code >= 400:
        try:
            err = response.json().get("error", {})
            detail = f"{err.get('code')}: {err.get('message')}"
        except ValueError:
            detail = response.text[:300]
        raise DemoError(f"{what} failed with HTTP {response.status_code} ({detail})")
    return response.json()


def _image_bytes(client: httpx.Client, ref: dict[str, Any]) -> bytes:
    url = ref.get("url") or ""
    if url.startswith(("http://", "https://")):
        return client.get(url).content
    path = url.removeprefix("file://")
    if not path:
        uri = ref.get("uri", "")
        path = uri[len("file://") :] if uri.startswith("file://") else ""
    return Path(path).read_bytes()


def wait_for_job(client: httpx.Client, job_id: str, timeout_s: float, what: str) -> dict[str, Any]:
    """Follow the job's server-sent events until it ends (one request, no polling), then read its final state.
    If the stream breaks, poll politely and honour 429 Retry-After."""
    deadline = time.perf_counter() + timeout_s
    try:
        with client.stream("GET", f"/api/v1/job/{job_id}/events", timeout=timeout_s) as stream:
            if stream.status_code == 200:
                for line in stream.iter_lines():
                    if line.startswith("event:") and line[6:].strip() in TERMINAL | {"error"}:
                        break
    except httpx.HTTPError:
        pass
    job: dict[str, Any] = {"status": "timeout"}
    while time.perf_counter() < deadline:
        response = client.get(f"/api/v1/job/{job_id}")
        if response.status_code == 429:
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        job = _check(response, f"status of {what}")
        if job["status"] in TERMINAL:
            break
        time.sleep(0.5)
    return job


def contact_sheet(reference: bytes, scenes: list[Scene], images: list[bytes | None], out: Path) -> Path:
    tile, pad, caption = 320, 12, 68
    cols = 1 + len(scenes)
    sheet = Image.new("RGB", (cols * (tile + pad) + pad, tile + caption + 2 * pad), (245, 245, 245))
    draw = ImageDraw.Draw(sheet)
    cells = [("reference", reference)] + [
        (
            f"scene {s.index}: {s.provider or 'failed'}\nIDR {s.idr_calibrated:.2f} {s.verdict.lower()}"
            + (
                f"\ncopy {s.copy_similarity:.2f}" + (" NEAR-COPY" if s.near_copy else "")
                if s.copy_similarity is not None
                else ""
            )
            if s.idr_calibrated is not None
            else f"scene {s.index}: {s.status or 'failed'}",
            img,
        )
        for s, img in zip(scenes, images)
    ]
    for i, (label, data) in enumerate(cells):
        x = pad + i * (tile + pad)
        if data:
            im = Image.open(io.BytesIO(data)).convert("RGB")
            im.thumbnail((tile, tile))
            sheet.paste(im, (x + (tile - im.width) // 2, pad + (tile - im.height) // 2))
        draw.multiline_text((x, pad + tile + 6), label, fill=(20, 20, 20))
    path = out / "contact_sheet.png"
    sheet.save(path)
    return path


def run_story(
    base_url: str,
    references: list[tuple[str, bytes]],
    out: Path,
    *,
    story: list[str] = STORY,
    job_timeout_s: float = 150.0,
    on_scene: Callable[[Scene], None] | None = None,
    video: bool = False,
) -> dict[str, Any]:
    """The client side of the demo against a running gateway. Returns the report (also written to out).
    `video`: every scene is a short video."""
    out.mkdir(parents=True, exist_ok=True)
    with httpx.Client(base_url=base_url, timeout=60) as client:
        email = f"demo-{secrets.token_hex(4)}@idlock.local"
        password = secrets.token_urlsafe(16)
        _check(client.post("/auth/register", json={"email": email, "password": password}), "register")
        token = _check(client.post("/auth/login", json={"email": email, "password": password}), "login")
        client.headers["Authorization"] = f"Bearer {token['access_token']}"

        files = [("image", (name, data, "application/octet-stream")) for name, data in references]
        created = _check(
            client.post(
                "/api/v1/characters",
                data={
                    "name": "Arya",
                    "description": "a young warrior with short dark hair",
                    "consent": "true",
                },
                files=files,
            ),
            "create character",
        )
        character_id = created["character_id"]
        if created["status"] != "ready":
            raise DemoError(f"character is {created['status']}: {created.get('status_reasons')}")

        scenes: list[Scene] = []
        images: list[bytes | None] = []
        for i, prompt in enumerate(story, start=1):
            scene = Scene(index=i, prompt=prompt, kind="video" if video else "image")
            options: dict[str, Any] = {"watermark": True, "seed": i}
            if video:
                scene.dialogue = DIALOGUE[(i - 1) % len(DIALOGUE)]
                options.update(video=True, video_duration_s=3, dialogue=scene.dialogue)
            started = time.perf_counter()
            accepted = _check(
                client.post(
                    "/api/v1/generate",
                    json={"character_id": character_id, "prompt": prompt, "options": options},
                    headers={"Idempotency-Key": f"demo-{character_id}-{i}"},
                ),
                f"submit scene {i}",
            )
            scene.job_id = accepted["job_id"]
            job = wait_for_job(client, scene.job_id, job_timeout_s, f"scene {i}")
            scene.seconds = round(time.perf_counter() - started, 2)
            scene.status = job.get("status", "timeout")
            metrics = job.get("metrics") or {}
            idr = metrics.get("idr_after") or metrics.get("idr_before") or {}
            scene.provider = metrics.get("provider", "")
            scene.provider_label = metrics.get("provider_label", "")
            scene.idr_raw = idr.get("raw")
            scene.idr_calibrated = idr.get("calibrated")
            scene.verdict = str(idr.get("verdict", "")).removeprefix("VERDICT_")
            scene.copy_similarity = metrics.get("copy_similarity")
            scene.near_copy = metrics.get("near_copy")
            scene.copy_note = metrics.get("copy_note") or ""
            scene.regenerated = bool(metrics.get("regenerated", False))
            scene.refined = bool(metrics.get("refined", False))
            scene.refine_needed = bool(metrics.get("refine_needed", False))
            scene.tags = {k: v for k, v in (metrics.get("tags") or {}).items() if v}
            scene.state_source = metrics.get("state_source", "")
            scene.prompt_engine = metrics.get("prompt_engine", "")
            if job.get("error"):
                scene.error = f"{job['error'].get('code')}: {job['error'].get('message')}"
            if video:
                scene.video_duration_s = metrics.get("video_duration_s")
                scene.frames_scored = int(metrics.get("frames_scored", 0))
                scene.frame_idr_min = metrics.get("frame_idr_min", 0.0 if scene.frames_scored else None)
                scene.frame_idr_mean = metrics.get("frame_idr_mean", 0.0 if scene.frames_scored else None)
                scene.frame_idrs = [
                    {
                        "timestamp_s": f.get("timestamp_s", 0.0),
                        "face_found": bool(f.get("face_found", False)),
                        "idr_calibrated": (f.get("score") or {}).get("calibrated")
                        if f.get("face_found")
                        else None,
                    }
                    for f in metrics.get("frame_idrs", [])
                ]
                clip = (job.get("result") or {}).get("video")
                if scene.status == "succeeded" and clip:
                    scene.video = f"scene_{i}{mimetypes.guess_extension(clip.get('mime', '')) or '.mp4'}"
                    (out / scene.video).write_bytes(_image_bytes(client, clip))
            image = None
            if scene.status == "succeeded" and (job.get("result") or {}).get("image"):
                image = _image_bytes(client, job["result"]["image"])
                scene.image = f"scene_{i}.png"
                (out / scene.image).write_bytes(image)
            scenes.append(scene)
            images.append(image)
            if on_scene:
                on_scene(scene)

        history = _check(client.get(f"/api/v1/character/{character_id}/history"), "history")
        sheet = contact_sheet(references[0][1], scenes, images, out)
    report = {
        "character_id": character_id,
        "gateway": base_url,
        # the demo's throwaway user on its own local mesh, to look at the story in the studio (`--stay`)
        "studio": {"url": f"{base_url}/", "email": email, "password": password},
        "scenes": [{k: v for k, v in scene.__dict__.items()} for scene in scenes],
        "media": "video" if video else "image",
        "history_episodes": len(history.get("items", [])),
        "story_summary": history.get("story_summary", ""),
        "contact_sheet": sheet.name,
        "ok": all(s.status == "succeeded" for s in scenes) and len(history.get("items", [])) == len(scenes),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report


def demo_env() -> dict[str, str]:
    """The demo watermarks its results; a Gemini key from the usual variables is passed to the render service."""
    env = {"IDLOCK_RENDER_WATERMARK": "true"}
    key = (
        os.environ.get("IDLOCK_RENDER_GEMINI_API_KEY")
        or os.environ.get("GEMINI_API_KEY")
        or os.environ.get("GOOGLE_API_KEY")
    )
    if key:
        env["IDLOCK_RENDER_GEMINI_API_KEY"] = key
    return env


def run_demo(
    out: Path,
    references: list[tuple[str, bytes]] | None = None,
    *,
    data_dir: Path | None = None,
    on_scene: Callable[[Scene], None] | None = None,
    on_mesh: Callable[[LocalMesh], None] | None = None,
    video: bool = False,
    stay: Callable[[LocalMesh, dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The demo on a mesh of its own. `stay`: called with the mesh still up once the story is told (e.g. to let
    a person look at it in the studio); the mesh stops when it returns."""
    references = references or sample_references()
    with tempfile.TemporaryDirectory(prefix="idlock-demo-") as tmp:
        mesh = LocalMesh(Path(data_dir or tmp), free_ports=True, nats_port=0, extra_env=demo_env())
        with mesh:
            if on_mesh:
                on_mesh(mesh)
            report = run_story(
                mesh.components["gateway"].address, references, Path(out), on_scene=on_scene, video=video
            )
            if stay:
                stay(mesh, report)
            return report
