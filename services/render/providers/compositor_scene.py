"""The offline compositor's scene: sky, ground, props and clothing colours read from the prompt, and the character
with the reference face pasted in. Deterministic for a seed."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from services.render.providers.compositor_faces import FaceCrop

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


def draw_scene(
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
    arr[:horizon] = (np.array(sky[0]) * (1 - t_sky) + np.array(sky[1]) * t_sky).astype(np.uint8)[:, None, :]
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
        d.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=(255, 170, 80) if sunset else (255, 240, 190))
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
        d.polygon([(dx + ds, dy), (dx + ds * 1.5, dy - ds * 0.4), (dx + ds * 1.3, dy + ds * 0.1)], fill=col)
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
        paste_face(img, face, cx, cy, face_w, rng.randrange(2**31))
    else:
        r = face_w * 0.55
        d.ellipse((cx - r, cy - r * 1.25, cx + r, cy + r * 1.25), fill=(215, 175, 145))
    return img


def paste_face(img: Image.Image, face: FaceCrop, cx: float, cy: float, face_w: float, seed: int) -> None:
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
