"""Offline development renderer: a deterministic scene drawn from the prompt, with the reference face pasted in.

It is not a model: every result is labelled `offline/compositor`. It lets the whole pipeline (IDR scoring,
refinement, memory) run without an API key or weights. `drift` pastes another face or a distorted one so that
refinement has something to repair.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import random
import threading
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from idlock.errors import InvalidInput
from idlock.threads import model_executor
from services.render.models import EditRequest, MediaKind, RenderRequest, RenderResult
from services.render.providers.base import RenderProvider, decode_image, encode_png, pick_seed
from services.render.video import write_mp4

LABEL = "offline/compositor"
MODEL = "compositor-v1"
#: face width of cached reference crops (px)
NORM_FACE_W = 320

# (top colour, horizon colour) of the sky per mood keyword, first match wins
_SKIES: list[tuple[tuple[str, ...], tuple[tuple[int, int, int], tuple[int, int, int]]]] = [
    (("night", "midnight", "moon", "stars", "dark"), ((8, 12, 40), (40, 50, 95))),
    (("sunset", "dusk", "evening"), ((70, 40, 110), (250, 140, 60))),
    (("sunrise", "dawn", "morning"), ((120, 150, 210), (250, 200, 150))),
    (("storm", "rain", "fog", "mist", "grey", "gray"), ((70, 75, 85), (150, 155, 160))),
    (("desert", "sand", "dune"), ((110, 170, 230), (240, 220, 170))),
]
_DEFAULT_SKY = ((60, 120, 210), (175, 210, 240))
# ground colours (near, far) per keyword
_GROUNDS: list[tuple[tuple[str, ...], tuple[tuple[int, int, int], tuple[int, int, int]]]] = [
    (("forest", "woods", "jungle", "grass", "meadow", "field"), ((30, 80, 35), (70, 130, 60))),
    (("cliff", "mountain", "rock", "canyon", "cave"), ((80, 75, 70), (130, 120, 110))),
    (("sea", "ocean", "beach", "lake", "river", "shore"), ((20, 70, 120), (60, 130, 180))),
    (("snow", "ice", "winter", "arctic"), ((210, 215, 225), (240, 245, 250))),
    (("desert", "sand", "dune"), ((190, 160, 100), (225, 200, 140))),
    (("city", "street", "town", "alley", "market"), ((60, 60, 65), (100, 100, 105))),
]
_DEFAULT_GROUND = ((90, 110, 60), (140, 160, 100))
_COLOURS = {
    "red": (180, 30, 35),
    "blue": (40, 70, 170),
    "green": (40, 130, 60),
    "black": (25, 25, 28),
    "white": (230, 230, 230),
    "gold": (200, 160, 40),
    "yellow": (220, 200, 50),
    "purple": (110, 50, 140),
    "brown": (110, 70, 40),
    "orange": (220, 120, 40),
    "grey": (120, 120, 125),
    "gray": (120, 120, 125),
    "silver": (180, 185, 195),
    "pink": (220, 130, 160),
}


def _has(words: set[str], keys: tuple[str, ...]) -> bool:
    return any(k in words for k in keys)


def _words(prompt: str) -> set[str]:
    return {w.strip(".,;:!?\"'()[]").lower() for w in prompt.split()}


def _lerp(a, b, t):
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))


@dataclass
class FaceCrop:
    image: Image.Image  # RGB crop with margin around the face
    face_box: tuple[int, int, int, int]  # face box (l, t, r, b) inside the crop


class FaceFinder:
    """Largest frontal face in an image: dlib's HOG detector (no weights needed), else OpenCV's Haar cascade."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dlib = None
        self._haar = None
        try:
            import dlib

            self._dlib = dlib.get_frontal_face_detector()
        except Exception:  # noqa: BLE001 - optional dependency
            import cv2

            self._haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")

    def find(self, im: Image.Image) -> tuple[int, int, int, int] | None:
        """(l, t, r, b) of the largest face in `im` (RGB), or None."""
        scale = 1.0
        work = im
        longest = max(im.size)
        if longest > 1000:
            scale = 1000 / longest
            work = im.resize(
                (max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR
            )
        arr = np.asarray(work)
        boxes: list[tuple[int, int, int, int]] = []
        with self._lock:
            if self._dlib is not None:
                upsample = 1 if max(work.size) < 700 else 0
                for r in self._dlib(arr, upsample):
                    boxes.append((r.left(), r.top(), r.right(), r.bottom()))
                if not boxes and upsample == 0:
                    boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in self._dlib(arr, 1)]
            else:
                import cv2

                gray = cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY)
                for x, y, w, h in self._haar.detectMultiScale(gray, 1.1, 5, minSize=(24, 24)):
                    boxes.append((int(x), int(y), int(x + w), int(y + h)))
        if not boxes:
            return None
        l, t, r, b = max(boxes, key=lambda bx: (bx[2] - bx[0]) * (bx[3] - bx[1]))
        return (round(l / scale), round(t / scale), round(r / scale), round(b / scale))

    def crop(self, im: Image.Image) -> FaceCrop | None:
        box = self.find(im)
        if box is None:
            return None
        l, t, r, b = box
        w, h = r - l, b - t
        # generous margin: hair above, chin and neck below, ears at the sides
        cl, ct = max(0, round(l - 0.6 * w)), max(0, round(t - 0.8 * h))
        cr, cb = min(im.width, round(r + 0.6 * w)), min(im.height, round(b + 0.6 * h))
        crop = im.crop((cl, ct, cr, cb))
        box = (l - cl, t - ct, r - cl, b - ct)
        if w > NORM_FACE_W:  # keep crops small: the face is pasted at ~150-250 px anyway
            f = NORM_FACE_W / w
            crop = crop.resize((max(1, round(crop.width * f)), max(1, round(crop.height * f))), Image.LANCZOS)
            box = tuple(round(c * f) for c in box)
        return FaceCrop(crop, box)


def distort_face(crop: FaceCrop, amount: float = 1.0) -> FaceCrop:
    """Warp a face so that it stops matching its owner while still looking like a face: features pulled
    towards the centre, the lower face squashed, a wave across it, enlarged eyes and a pinched mouth.
    `amount` scales every effect (1.0 = the tuned default)."""
    import cv2

    fw0 = crop.face_box[2] - crop.face_box[0]
    if fw0 < 220:  # warp at paste resolution, not on a small crop
        f = 220 / max(1, fw0)
        crop = FaceCrop(
            crop.image.resize((round(crop.image.width * f), round(crop.image.height * f)), Image.LANCZOS),
            tuple(round(c * f) for c in crop.face_box),
        )
    im = np.asarray(crop.image).astype(np.float32)
    h, w = im.shape[:2]
    l, t, r, b = crop.face_box
    fw, fh = r - l, b - t
    cx, cy = (l + r) / 2, (t + b) / 2
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = (xx - cx) / (fw / 2), (yy - cy) / (fh / 2)  # normalised around the face centre
    inside = np.clip(1.2 - np.sqrt(u * u + v * v), 0, 1)
    k = min(0.85, 0.6 * amount) * inside
    squash = max(0.4, 1 - 0.3 * amount)
    su = u * (1 - k)
    sv = v * (1 - k) * np.where(v > 0, squash, 1.0)
    su = su + 0.15 * amount * np.sin(3.0 * sv) * inside
    src_x = cx + su * fw / 2
    src_y = cy + sv * fh / 2
    for ex, ey, strength in (
        (l + 0.3 * fw, t + 0.38 * fh, 0.4),
        (l + 0.7 * fw, t + 0.38 * fh, 0.4),
        (cx, t + 0.8 * fh, -0.3),
    ):
        strength = max(-0.9, min(0.9, strength * amount))
        dx, dy = src_x - ex, src_y - ey
        rr = np.sqrt(dx * dx + dy * dy) / (0.22 * fw)
        f = 1 - strength * np.clip(1 - rr, 0, 1) ** 2
        src_x, src_y = ex + dx * f, ey + dy * f
    out = cv2.remap(
        im,
        src_x.astype(np.float32),
        src_y.astype(np.float32),
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    return FaceCrop(Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)), crop.face_box)


class _Recogniser:
    """dlib's ResNet face descriptor (weights from the face_recognition_models package), used only to make sure a
    `distorted` drift really stopped matching. Optional: without it the default warp is used unchecked."""

    def __init__(self) -> None:
        self.ok = False
        try:
            import dlib
            import face_recognition_models as frm

            self._det = dlib.get_frontal_face_detector()
            self._sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
            self._net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
            self.ok = True
        except Exception as e:  # noqa: BLE001 - optional: dlib / face_recognition_models not installed
            logging.getLogger("idlock.render.compositor").info("drift check disabled: %s", e)
        self._lock = threading.Lock()

    def descriptor(self, im: Image.Image) -> np.ndarray | None:
        arr = np.asarray(im.convert("RGB"))
        with self._lock:
            dets = self._det(arr, 1)
            if not dets:
                return None
            d = max(dets, key=lambda r: r.width() * r.height())
            return np.array(self._net.compute_face_descriptor(arr, self._sp(arr, d)))


#: a distorted face must sit at least this far (dlib distance) from the original; same-person pairs sit < 0.6
DRIFT_MIN_DISTANCE = 0.68
_AMOUNTS = (1.0, 1.3, 1.6, 1.9, 2.2)


def _even(v: int) -> int:
    return max(16, v - v % 2)


class CompositorProvider(RenderProvider):
    name = "compositor"
    model = MODEL
    supports_video = True

    def __init__(self, settings=None) -> None:
        self._settings = settings
        self._faces = FaceFinder()
        self._recogniser: _Recogniser | None = None
        self._cache: dict[bytes, FaceCrop | None] = {}
        self._cache_lock = threading.Lock()
        # drawing runs on threads of its own, at the configured model priority (threads start when first used)
        self._pool = model_executor(4, "compositor", getattr(settings, "model_thread_priority", "normal"))

    def unavailable_reason(self) -> str | None:
        if self._settings is not None and not getattr(self._settings, "compositor_enabled", True):
            return "compositor disabled (IDLOCK_RENDER_COMPOSITOR_ENABLED=false)"
        return None

    def _distorted_scene(
        self, prompt: str, W: int, H: int, rng: random.Random, face: FaceCrop
    ) -> tuple[Image.Image, str]:
        """Draw the scene with a distorted face; when dlib's recogniser is available, raise the distortion until
        the pasted face (as found in the final image) is at least DRIFT_MIN_DISTANCE from the original."""
        state = rng.getstate()

        def draw(cand: FaceCrop | None) -> Image.Image:
            r = random.Random()
            r.setstate(state)
            return self._scene(prompt, W, H, r, cand)

        if self._recogniser is None:
            self._recogniser = _Recogniser()
        rec = self._recogniser
        ref = rec.descriptor(draw(face)) if rec.ok else None
        if ref is None:
            return draw(distort_face(face)), "drift=distorted: the face was altered on purpose (unchecked)"
        best: tuple[float, Image.Image] | None = None
        for amount in _AMOUNTS:
            img = draw(distort_face(face, amount))
            desc = rec.descriptor(img)
            if desc is None:
                continue
            dist = float(np.linalg.norm(desc - ref))
            if best is None or dist > best[0]:
                best = (dist, img)
            if dist >= DRIFT_MIN_DISTANCE:
                break
        if best is None:
            return draw(
                distort_face(face)
            ), "drift=distorted: the face was altered on purpose (no face found)"
        return best[1], f"drift=distorted: the face was altered on purpose (dlib distance {best[0]:.2f})"

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

        face = self._scene_face(req, notes, "scene")
        if req.drift == "distorted" and face is None:
            notes.append("drift=distorted ignored: no reference face to distort")
        if req.pose_image:
            notes.append("pose image not used by the compositor")
        if req.lora_path:
            notes.append("LoRA not used by the compositor")

        if req.drift == "distorted" and face is not None:
            img, note = self._distorted_scene(req.prompt, width, height, rng, face)
            notes.append(note)
        else:
            img = self._scene(req.prompt, width, height, rng, face)
        return RenderResult(
            image=encode_png(img),
            provider=self.name,
            model=MODEL,
            seed=seed,
            width=width,
            height=height,
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
            self._paste_face(base, face, (l + r) / 2, (t + b) / 2, max(8, r - l), seed)
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
        """A short offline clip: the scene of `render_sync`, the character's face moving across it (mp4v)."""
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
        for k in range(n):
            rng = random.Random()
            rng.setstate(state)
            t = k / (n - 1)
            frames.append(
                np.asarray(self._scene(req.prompt, width, height, rng, face, char_x=width * (0.35 + 0.3 * t)))
            )
        video = write_mp4(frames, fps)
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
            video_mime="video/mp4",
            last_frame=encode_png(Image.fromarray(frames[-1])),
            duration_s=n / fps,
            fps=float(fps),
        )

    # -- drawing ---------------------------------------------------------------------------------------------
    def _scene(
        self,
        prompt: str,
        W: int,
        H: int,
        rng: random.Random,
        face: FaceCrop | None,
        char_x: float | None = None,
    ) -> Image.Image:
        words = _words(prompt)
        sky = next((c for keys, c in _SKIES if _has(words, keys)), _DEFAULT_SKY)
        ground = next((c for keys, c in _GROUNDS if _has(words, keys)), _DEFAULT_GROUND)
        horizon = int(H * rng.uniform(0.55, 0.68))

        arr = np.empty((H, W, 3), dtype=np.uint8)
        t_sky = np.linspace(0.0, 1.0, max(1, horizon))[:, None]
        arr[:horizon] = (np.array(sky[0]) * (1 - t_sky) + np.array(sky[1]) * t_sky).astype(np.uint8)[
            :, None, :
        ]
        t_gr = np.linspace(0.0, 1.0, max(1, H - horizon))[:, None]
        arr[horizon:] = (np.array(ground[1]) * (1 - t_gr) + np.array(ground[0]) * t_gr).astype(np.uint8)[
            :, None, :
        ]
        img = Image.fromarray(arr, "RGB")
        d = ImageDraw.Draw(img)
        s = min(W, H)

        night = _has(words, ("night", "midnight", "moon", "stars", "dark"))
        if night:
            for _ in range(60 + W * H // 20000):
                x, y = rng.randrange(W), rng.randrange(max(1, horizon))
                c = rng.randint(170, 255)
                d.point((x, y), fill=(c, c, c))
            mx, my, mr = rng.uniform(0.1, 0.9) * W, rng.uniform(0.08, 0.25) * H, s * 0.05
            d.ellipse((mx - mr, my - mr, mx + mr, my + mr), fill=(235, 235, 215))
        else:
            sunset = _has(words, ("sunset", "dusk", "evening", "sunrise", "dawn"))
            sx = rng.uniform(0.1, 0.9) * W
            sy = horizon - s * 0.06 if sunset else rng.uniform(0.08, 0.25) * H
            sr = s * (0.09 if sunset else 0.05)
            d.ellipse(
                (sx - sr, sy - sr, sx + sr, sy + sr), fill=(255, 170, 80) if sunset else (255, 240, 190)
            )
            for _ in range(rng.randint(1, 4)):  # clouds
                cx, cy = rng.uniform(0, W), rng.uniform(0.05, 0.35) * H
                for _ in range(4):
                    rx, ry = s * rng.uniform(0.04, 0.08), s * rng.uniform(0.02, 0.04)
                    ox = cx + rng.uniform(-s * 0.06, s * 0.06)
                    d.ellipse((ox - rx, cy - ry, ox + rx, cy + ry), fill=(240, 240, 245))

        if _has(words, ("mountain", "mountains", "cliff", "cliffs", "canyon", "rock", "rocks")):
            for _ in range(rng.randint(2, 4)):
                bx = rng.uniform(-0.1, 1.1) * W
                pw, ph = rng.uniform(0.2, 0.45) * W, rng.uniform(0.15, 0.35) * H
                shade = rng.randint(60, 110)
                d.polygon(
                    [(bx - pw / 2, horizon), (bx, horizon - ph), (bx + pw / 2, horizon)],
                    fill=(shade, shade - 5, shade - 10),
                )
        if _has(words, ("cliff", "cliffs")):
            left = rng.random() < 0.5
            x0 = 0 if left else W
            x1 = W * (0.28 if left else 0.72)
            d.polygon(
                [(x0, H * 0.3), (x1, H * 0.36), (x1 + (W * 0.04 if left else -W * 0.04), H), (x0, H)],
                fill=(95, 85, 75),
            )
        if _has(words, ("forest", "woods", "jungle", "trees", "tree")):
            for _ in range(rng.randint(8, 16)):
                tx = rng.uniform(0, W)
                th = rng.uniform(0.12, 0.28) * H
                ty = horizon + rng.uniform(-0.02, 0.1) * H
                g = rng.randint(40, 90)
                d.rectangle((tx - s * 0.008, ty - th * 0.3, tx + s * 0.008, ty), fill=(70, 45, 25))
                d.polygon(
                    [(tx - th * 0.25, ty - th * 0.25), (tx, ty - th), (tx + th * 0.25, ty - th * 0.25)],
                    fill=(20, g, 30),
                )
        if _has(words, ("city", "street", "town", "skyline", "buildings")):
            x = 0.0
            while x < W:
                bw, bh = rng.uniform(0.05, 0.12) * W, rng.uniform(0.15, 0.4) * H
                g = rng.randint(50, 100)
                d.rectangle((x, horizon - bh, x + bw, horizon), fill=(g, g, g + 10))
                x += bw + rng.uniform(0, 0.02) * W
        if _has(words, ("sea", "ocean", "beach", "lake")):
            for i in range(6):
                y = horizon + (H - horizon) * (i + 0.5) / 6
                d.line((0, y, W, y + rng.uniform(-3, 3)), fill=(150, 190, 220), width=max(1, s // 300))
        if _has(words, ("dragon", "dragons")):
            dx, dy = rng.uniform(0.15, 0.85) * W, rng.uniform(0.12, 0.3) * H
            ds = s * rng.uniform(0.08, 0.14)
            col = (110, 20, 25)
            d.ellipse((dx - ds, dy - ds * 0.3, dx + ds, dy + ds * 0.3), fill=col)  # body
            d.polygon(
                [(dx - ds * 0.3, dy), (dx - ds * 1.6, dy - ds * 1.2), (dx - ds * 0.9, dy + ds * 0.1)],
                fill=col,
            )
            d.polygon(
                [(dx + ds * 0.3, dy), (dx + ds * 1.6, dy - ds * 1.2), (dx + ds * 0.9, dy + ds * 0.1)],
                fill=col,
            )
            d.polygon(
                [(dx + ds, dy), (dx + ds * 1.5, dy - ds * 0.4), (dx + ds * 1.3, dy + ds * 0.1)], fill=col
            )
            d.line((dx - ds, dy, dx - ds * 1.8, dy + ds * 0.5), fill=col, width=max(1, int(ds * 0.15)))
        if _has(words, ("fire", "flames", "burning", "campfire")):
            fx, fy = rng.uniform(0.1, 0.9) * W, H * rng.uniform(0.8, 0.92)
            for k, col in enumerate(((200, 40, 20), (240, 120, 30), (255, 210, 80))):
                f = s * (0.07 - k * 0.02)
                d.polygon([(fx - f, fy), (fx, fy - f * 2.5), (fx + f, fy)], fill=col)

        # the character: shoulders in the first colour the prompt names, head = the reference face
        clothing = next((_COLOURS[w] for w in sorted(words) if w in _COLOURS), None) or (
            rng.randint(40, 200),
            rng.randint(40, 200),
            rng.randint(40, 200),
        )
        cx = W * rng.uniform(0.4, 0.6)  # drawn even when `char_x` is given: the rest of the scene stays put
        if char_x is not None:
            cx = char_x
        face_w = max(8.0, min(250.0, max(150.0, 0.24 * s)) if s >= 600 else 0.26 * s)
        cy = H * 0.42
        sh_w, top = face_w * 1.3, cy + face_w * 0.8
        d.ellipse((cx - sh_w, top, cx + sh_w, top + face_w * 2.2), fill=clothing)
        d.rectangle(
            (cx - face_w * 0.22, cy + face_w * 0.4, cx + face_w * 0.22, top + face_w * 0.2),
            fill=(200, 160, 130),
        )
        if face is not None:
            self._paste_face(img, face, cx, cy, face_w, rng.randrange(2**31))
        else:
            r = face_w * 0.55
            d.ellipse((cx - r, cy - r * 1.25, cx + r, cy + r * 1.25), fill=(215, 175, 145))
        return img

    @staticmethod
    def _paste_face(img: Image.Image, face: FaceCrop, cx: float, cy: float, face_w: float, seed: int) -> None:
        """Scale the crop so the face box is `face_w` wide, centre the face box at (cx, cy), blend the margin."""
        l, t, r, b = face.face_box
        scale = face_w / max(1, r - l)
        cw, ch = max(1, round(face.image.width * scale)), max(1, round(face.image.height * scale))
        crop = face.image.resize((cw, ch), Image.LANCZOS)
        fx, fy = (l + r) / 2 * scale, (t + b) / 2 * scale
        ox, oy = round(cx - fx), round(cy - fy)
        # elliptical mask; only its outer rim is feathered, the face itself stays sharp
        mask = Image.new("L", (cw, ch), 0)
        md = ImageDraw.Draw(mask)
        inset_x, inset_y = cw * 0.06, ch * 0.05
        md.ellipse((inset_x, inset_y, cw - inset_x, ch - inset_y), fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(radius=max(1.0, cw * 0.04)))
        img.paste(crop, (ox, oy), mask)
