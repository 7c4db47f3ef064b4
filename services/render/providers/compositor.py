"""Offline development renderer: a deterministic scene drawn from the story state in the request (backdrop per
setting and time of day, garments, props, injuries), with the reference face posed into it.

It is not a model: every result is labelled `offline/compositor`, and its face is the reference photo's, so the
identity service reports it as a near-copy. It lets the whole pipeline (IDR scoring, refinement, memory) run
without an API key or weights. `drift` pastes another face or a distorted one so that refinement has something
to repair.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import random
import threading
import time

import numpy as np
from PIL import Image

from idlock.errors import InvalidInput
from idlock.threads import model_executor
from services.render.models import EditRequest, MediaKind, RenderRequest, RenderResult, SceneState
from services.render.providers.base import RenderProvider, decode_image, encode_png, pick_seed
from services.render.providers.compositor_faces import (
    DRIFT_AMOUNTS,
    DRIFT_MIN_DISTANCE,
    FaceCrop,
    FaceFinder,
    Recogniser,
    distort_face,
)
from services.render.providers.compositor_scene import compose_cast, compose_scene, paste_face
from services.render.providers.compositor_story import Layout
from services.render.video import VIDEO_MIME, write_video

LABEL = "offline/compositor"
MODEL = "compositor-v2"


def story_notes(state: SceneState | None, lay: Layout) -> list[str]:
    """What the scene drew from the story state, and what it could not draw (also in the image's caption)."""
    if state is None:
        return ["no story state in the request: only the character and a default backdrop were drawn"]
    notes = []
    if lay.drawn:
        notes.append("drew: " + "; ".join(f"{c} {n}" for c, n in lay.drawn))
    if lay.not_drawn:
        notes.append("not drawn: " + "; ".join(lay.not_drawn))
    return notes


def _even(v: int) -> int:
    return max(16, v - v % 2)


class CompositorProvider(RenderProvider):
    name = "compositor"
    model = MODEL
    supports_video = True

    def __init__(self, settings=None) -> None:
        self._settings = settings
        self._faces = FaceFinder()
        self._recogniser: Recogniser | None = None
        self._cache: dict[bytes, FaceCrop | None] = {}
        self._cache_lock = threading.Lock()
        # drawing runs on threads of its own, at the configured model priority (threads start when first used)
        self._pool = model_executor(4, "compositor", getattr(settings, "model_thread_priority", "normal"))

    def unavailable_reason(self) -> str | None:
        if self._settings is not None and not getattr(self._settings, "compositor_enabled", True):
            return "compositor disabled (IDLOCK_RENDER_COMPOSITOR_ENABLED=false)"
        return None

    def _distorted_scene(
        self, state: SceneState | None, W: int, H: int, rng: random.Random, face: FaceCrop
    ) -> tuple[Image.Image, Layout, str]:
        """Draw the scene with a distorted face; when dlib's recogniser is available, raise the distortion until
        the pasted face (as found in the final image) is at least DRIFT_MIN_DISTANCE from the original."""
        rng_state, story = rng.getstate(), state

        def draw(cand: FaceCrop | None) -> tuple[Image.Image, Layout]:
            r = random.Random()
            r.setstate(rng_state)
            return compose_scene(W, H, r, cand, story, pose=False)

        if self._recogniser is None:
            self._recogniser = Recogniser()
        rec = self._recogniser
        ref = rec.descriptor(draw(face)[0]) if rec.ok else None
        if ref is None:
            return *draw(distort_face(face)), "drift=distorted: the face was altered on purpose (unchecked)"
        best: tuple[float, Image.Image, Layout] | None = None
        for amount in DRIFT_AMOUNTS:
            img, lay = draw(distort_face(face, amount))
            desc = rec.descriptor(img)
            if desc is None:
                continue
            dist = float(np.linalg.norm(desc - ref))
            if best is None or dist > best[0]:
                best = (dist, img, lay)
            if dist >= DRIFT_MIN_DISTANCE:
                break
        if best is None:
            return *draw(
                distort_face(face)
            ), "drift=distorted: the face was altered on purpose (no face found)"
        return (
            best[1],
            best[2],
            f"drift=distorted: the face was altered on purpose (dlib distance {best[0]:.2f})",
        )

    def _face_of(self, data: bytes, what: str) -> FaceCrop | None:
        key = hashlib.sha256(data).digest()
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
        crop = self._faces.crop(decode_image(data, what))
        with self._cache_lock:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = crop
        return crop

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _draw(self, fn, req):
        context = contextvars.copy_context()  # the caller's trace span, as asyncio.to_thread carries it
        return await asyncio.get_running_loop().run_in_executor(self._pool, context.run, fn, req)

    async def render(self, req: RenderRequest) -> RenderResult:
        return await self._draw(self.render_sync, req)

    async def edit(self, req: EditRequest) -> RenderResult:
        return await self._draw(self.edit_sync, req)

    async def render_video(self, req: RenderRequest, progress=None) -> RenderResult:
        return await self._draw(self.render_video_sync, req)

    # -- synchronous core -------------------------------------------------------------------------------------
    def _scene_face(self, req: RenderRequest, notes: list[str], what: str) -> FaceCrop | None:
        """The face to place: the first reference with one, or the drift face when drift=other_face."""
        face: FaceCrop | None = None
        for i, ref in enumerate(req.references):
            face = self._face_of(ref, f"reference image {i}")
            if face is not None:
                break
        if req.references and face is None:
            notes.append(
                f"no face found in the reference images: {what} rendered without the character's face"
            )
        if req.drift == "other_face":
            other = self._face_of(req.drift_face or b"", "drift_face")
            if other is None:
                raise InvalidInput("drift_face has no detectable face")
            face = other
            notes.append("drift=other_face: a different face was pasted on purpose")
        return face

    def render_sync(self, req: RenderRequest) -> RenderResult:
        t0 = time.perf_counter()
        req.validate()
        dw = getattr(self._settings, "default_width", 768)
        dh = getattr(self._settings, "default_height", 768)
        width, height = req.size(dw, dh)
        seed = pick_seed(req.seed)
        rng = random.Random(
            int.from_bytes(hashlib.sha256(f"{req.prompt}\x00{seed}".encode()).digest()[:8], "big")
        )
        notes: list[str] = []

        if req.cast:
            return self._render_cast(req, width, height, seed, rng, t0)
        face = self._scene_face(req, notes, "scene")
        if req.drift == "distorted" and face is None:
            notes.append("drift=distorted ignored: no reference face to distort")
        if req.pose_image:
            notes.append("pose image not used by the compositor")
        if req.lora_path:
            notes.append("LoRA not used by the compositor")

        if req.drift == "distorted" and face is not None:
            img, lay, note = self._distorted_scene(req.state, width, height, rng, face)
            notes.append(note)
        else:
            img, lay = compose_scene(width, height, rng, face, req.state)
        notes.extend(story_notes(req.state, lay))
        return self._image(img, seed, t0, notes)

    def _render_cast(
        self, req: RenderRequest, width: int, height: int, seed: int, rng: random.Random, t0: float
    ) -> RenderResult:
        """Each character's first reference face, placed as asked, with its own state drawn."""
        notes: list[str] = []
        members = []
        for c in req.cast:
            face = None
            for i, ref in enumerate(c.references):
                face = self._face_of(ref, f"reference image {i} of {c.name}")
                if face is not None:
                    break
            if face is None:
                notes.append(f"no face found in the reference images of {c.name}: drawn without it")
            members.append((c.name or c.character_id, face, c.state, c.placement))
        if req.lora_path:
            notes.append("LoRA not used by the compositor")
        img, lay = compose_cast(width, height, rng, members, req.state)
        notes.extend(story_notes(req.state, lay))
        return self._image(img, seed, t0, notes)

    def _image(self, img: Image.Image, seed: int, t0: float, notes: list[str]) -> RenderResult:
        return RenderResult(
            image=encode_png(img),
            provider=self.name,
            model=MODEL,
            seed=seed,
            width=img.width,
            height=img.height,
            latency_s=time.perf_counter() - t0,
            label=LABEL,
            notes=notes,
        )

    def edit_sync(self, req: EditRequest) -> RenderResult:
        """Offline edit: paste the reference face over the masked region (or the face found in the image)."""
        t0 = time.perf_counter()
        req.validate()
        base = decode_image(req.image, "image to edit")
        seed = pick_seed(req.seed)
        notes: list[str] = []
        face = None
        for i, ref in enumerate(req.references):
            face = self._face_of(ref, f"reference image {i}")
            if face is not None:
                break
        target: tuple[int, int, int, int] | None = None
        if req.mask:
            m = decode_image(req.mask, "mask", mode="L").resize(base.size)
            bbox = m.point(lambda p: 255 if p >= 128 else 0).getbbox()
            target = bbox
        if target is None:
            target = self._faces.find(base)
        if face is None or target is None:
            notes.append("nothing to edit: no reference face or no target region; image returned unchanged")
        else:
            l, t, r, b = target
            paste_face(base, face, (l + r) / 2, (t + b) / 2, max(8, r - l), seed)
        return RenderResult(
            image=encode_png(base),
            provider=self.name,
            model=MODEL,
            seed=seed,
            width=base.width,
            height=base.height,
            latency_s=time.perf_counter() - t0,
            label=LABEL,
            notes=notes,
        )

    def render_video_sync(self, req: RenderRequest) -> RenderResult:
        """A short offline clip: the scene of `render_sync`, the character's face moving across it (WebM, VP8)."""
        t0 = time.perf_counter()
        req.validate()
        dw = getattr(self._settings, "video_width", 320)
        dh = getattr(self._settings, "video_height", 240)
        width, height = req.size(dw, dh) if (req.width or req.height or req.aspect_ratio) else (dw, dh)
        width, height = _even(min(width, 640)), _even(min(height, 640))
        fps = int(req.fps or getattr(self._settings, "video_fps", 8))
        duration = float(req.duration_s or getattr(self._settings, "video_duration_s", 3.0))
        n = max(2, round(duration * fps))
        seed = pick_seed(req.seed)
        notes: list[str] = []
        face = self._scene_face(req, notes, "clip")
        if req.drift == "distorted" and face is not None:
            face = distort_face(face, 1.9)
            notes.append("drift=distorted: the face was altered on purpose (unchecked)")
        state = random.Random(
            int.from_bytes(hashlib.sha256(f"{req.prompt}\x00{seed}".encode()).digest()[:8], "big")
        ).getstate()
        frames = []
        lay = Layout()
        for k in range(n):
            rng = random.Random()
            rng.setstate(state)
            t = k / (n - 1)
            img, lay = compose_scene(width, height, rng, face, req.state, char_x=width * (0.35 + 0.3 * t))
            frames.append(np.asarray(img))
        notes.extend(story_notes(req.state, lay))
        video = write_video(frames, fps)
        return RenderResult(
            image=encode_png(Image.fromarray(frames[0])),
            provider=self.name,
            model=MODEL,
            seed=seed,
            width=width,
            height=height,
            latency_s=time.perf_counter() - t0,
            label=LABEL,
            notes=notes,
            media=MediaKind.VIDEO,
            video=video,
            video_mime=VIDEO_MIME,
            last_frame=encode_png(Image.fromarray(frames[-1])),
            duration_s=n / fps,
            fps=float(fps),
        )
