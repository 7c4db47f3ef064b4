"""Faces for the offline compositor: find and crop the reference face, and distort it (drift) far enough that a
face recogniser no longer matches it, so that refinement has something to repair."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: face width of cached reference crops (px)
NORM_FACE_W = 320


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


class Recogniser:
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
DRIFT_AMOUNTS = (1.0, 1.3, 1.6, 1.9, 2.2)
