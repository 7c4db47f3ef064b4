"""The offline compositor's scene, drawn from the story state in the render request (never from the prompt text):
a backdrop per setting with its time of day, the character posed for the scene (position, scale, head tilt,
light on the face) with the reference face, garments, props and injuries (`compositor_story.py`), and a caption
that names the renderer and lists whatever it could not draw. Deterministic for a seed."""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from services.render.models import SceneState
from services.render.providers.compositor_faces import FaceCrop
from services.render.providers.compositor_story import (
    Figure,
    Layout,
    draw_character_items,
    draw_injury,
)

Colour = tuple[int, int, int]

#: (sky top, sky at the horizon, light on the scene) per time of day
TIMES: dict[str, tuple[Colour, Colour, float]] = {
    "day": ((60, 120, 210), (175, 210, 240), 1.0),
    "night": ((8, 12, 40), (40, 50, 95), 0.55),
    "sunset": ((70, 40, 110), (250, 140, 60), 0.85),
    "dawn": ((120, 150, 210), (250, 200, 150), 0.92),
    "storm": ((70, 75, 85), (150, 155, 160), 0.75),
}
TIME_WORDS = {
    "night": "night", "midnight": "night", "moonlit": "night", "dark": "night",
    "sunset": "sunset", "dusk": "sunset", "evening": "sunset", "twilight": "sunset",
    "dawn": "dawn", "sunrise": "dawn", "morning": "dawn",
    "noon": "day", "day": "day", "afternoon": "day", "midday": "day",
    "storm": "storm", "stormy": "storm", "rain": "storm", "rainy": "storm", "fog": "storm", "foggy": "storm",
}  # fmt: skip


def _gradient(arr: np.ndarray, y0: int, y1: int, top: Colour, bottom: Colour) -> None:
    if y1 <= y0:
        return
    t = np.linspace(0.0, 1.0, y1 - y0)[:, None]
    arr[y0:y1] = (np.array(top) * (1 - t) + np.array(bottom) * t).astype(np.uint8)[:, None, :]


def time_of_day(story: SceneState) -> str:
    for text in list(story.setting) + list(story.mood):
        for w in text.split():
            if w in TIME_WORDS:
                return TIME_WORDS[w]
    return "day"


# --- backdrops: (W, H, horizon, rng, draw) -> None, painted over the sky and ground ---------------------------


def _sky_things(d: ImageDraw.ImageDraw, W: int, H: int, horizon: int, when: str, rng: random.Random) -> None:
    s = min(W, H)
    if when == "night":
        for _ in range(60 + W * H // 20000):
            c = rng.randint(170, 255)
            d.point((rng.randrange(W), rng.randrange(max(1, horizon))), fill=(c, c, c))
        mx, my, mr = rng.uniform(0.1, 0.9) * W, rng.uniform(0.08, 0.2) * H, s * 0.05
        d.ellipse((mx - mr, my - mr, mx + mr, my + mr), fill=(235, 235, 215))
        return
    low = when in ("sunset", "dawn")
    sx = rng.choice((rng.uniform(0.05, 0.25), rng.uniform(0.75, 0.95))) * W
    sy = horizon - s * 0.05 if low else rng.uniform(0.08, 0.2) * H
    sr = s * (0.09 if low else 0.05)
    d.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=(255, 170, 80) if low else (255, 240, 190))
    for _ in range(rng.randint(1, 3)):
        cx, cy = rng.uniform(0, W), rng.uniform(0.05, 0.3) * H
        for _ in range(4):
            rx, ry = s * rng.uniform(0.04, 0.08), s * rng.uniform(0.02, 0.04)
            ox = cx + rng.uniform(-s * 0.06, s * 0.06)
            d.ellipse(
                (ox - rx, cy - ry, ox + rx, cy + ry),
                fill=(235, 235, 240) if when != "storm" else (110, 110, 118),
            )


def _mountains(d, W, H, horizon, rng, shade=(95, 90, 85)) -> None:
    for _ in range(rng.randint(2, 4)):
        bx, pw, ph = rng.uniform(-0.1, 1.1) * W, rng.uniform(0.25, 0.5) * W, rng.uniform(0.15, 0.35) * H
        k = rng.uniform(0.8, 1.1)
        d.polygon(
            [(bx - pw / 2, horizon), (bx, horizon - ph), (bx + pw / 2, horizon)],
            fill=tuple(round(c * k) for c in shade),
        )


def _cliff(d, W, H, horizon, rng) -> None:
    _mountains(d, W, H, horizon, rng)
    left = rng.random() < 0.5
    x0, x1 = (0, W * 0.3) if left else (W, W * 0.7)
    d.polygon(
        [(x0, H * 0.5), (x1, H * 0.56), (x1 + (W * 0.05 if left else -W * 0.05), H), (x0, H)],
        fill=(100, 88, 76),
    )
    d.rectangle((0, H * 0.86, W, H), fill=(85, 75, 65))  # the ledge the character stands on


def _trees(d, W, H, horizon, rng, n=(8, 16)) -> None:
    s = min(W, H)
    for _ in range(rng.randint(*n)):
        tx, th = rng.uniform(0, W), rng.uniform(0.14, 0.3) * H
        ty = horizon + rng.uniform(-0.02, 0.08) * H
        g = rng.randint(40, 90)
        d.rectangle((tx - s * 0.008, ty - th * 0.3, tx + s * 0.008, ty), fill=(70, 45, 25))
        d.polygon(
            [(tx - th * 0.25, ty - th * 0.25), (tx, ty - th), (tx + th * 0.25, ty - th * 0.25)],
            fill=(20, g, 30),
        )


def _camp(d, W, H, horizon, rng) -> None:
    _trees(d, W, H, horizon, rng, (4, 8))
    s = min(W, H)
    tx = rng.choice((0.08, 0.92)) * W
    d.polygon(
        [(tx - s * 0.14, horizon + s * 0.12), (tx, horizon - s * 0.08), (tx + s * 0.14, horizon + s * 0.12)],
        fill=(170, 140, 90),
    )
    fx, fy = W - tx, horizon + s * 0.16
    for k, col in enumerate(((200, 40, 20), (240, 120, 30), (255, 210, 80))):
        f = s * (0.05 - k * 0.014)
        d.polygon([(fx - f, fy), (fx, fy - f * 2.5), (fx + f, fy)], fill=col)


def _interior(d, W, H, rng, wall: Colour, floor: Colour, when: str) -> None:
    d.rectangle((0, 0, W, H * 0.72), fill=wall)
    for x in range(0, W, max(8, W // 14)):  # planks
        d.line((x, 0, x, H * 0.72), fill=tuple(round(c * 0.8) for c in wall), width=2)
    d.rectangle((0, H * 0.72, W, H), fill=floor)
    wx = rng.choice((0.12, 0.72)) * W
    window = TIMES[when][1]
    d.rectangle((wx, H * 0.12, wx + W * 0.16, H * 0.34), fill=window, outline=(60, 40, 25), width=4)


def _tavern(d, W, H, horizon, rng, when="day") -> None:
    _interior(d, W, H, rng, (120, 78, 45), (80, 55, 35), when)
    d.rectangle((0, H * 0.6, W, H * 0.7), fill=(95, 60, 30))  # the bar
    for k in range(3):  # barrels and hanging lamps
        bx = W * (0.1 + 0.4 * k)
        d.ellipse((bx, H * 0.74, bx + W * 0.1, H * 0.9), fill=(130, 85, 45), outline=(60, 40, 20), width=3)
        d.ellipse((bx + W * 0.03, H * 0.05, bx + W * 0.07, H * 0.09), fill=(255, 210, 110))


def _library(d, W, H, horizon, rng, when="day") -> None:
    _interior(d, W, H, rng, (150, 130, 110), (100, 80, 60), when)
    for y in (0.4, 0.52, 0.64):
        x = 0.0
        while x < W:
            bw = rng.uniform(0.01, 0.025) * W
            d.rectangle(
                (x, H * (y - 0.1), x + bw, H * y),
                fill=(rng.randint(60, 200), rng.randint(40, 120), rng.randint(40, 120)),
            )
            x += bw + 1


def _village(d, W, H, horizon, rng) -> None:
    x = rng.uniform(-0.05, 0.05) * W
    while x < W:
        hw, hh = rng.uniform(0.12, 0.2) * W, rng.uniform(0.1, 0.16) * H
        d.rectangle((x, horizon - hh, x + hw, horizon), fill=(220, 205, 170))
        d.polygon(
            [(x - hw * 0.1, horizon - hh), (x + hw / 2, horizon - hh * 1.8), (x + hw * 1.1, horizon - hh)],
            fill=(150, 60, 40),
        )
        d.rectangle((x + hw * 0.4, horizon - hh * 0.6, x + hw * 0.6, horizon), fill=(90, 60, 35))
        x += hw + rng.uniform(0.04, 0.1) * W


def _castle(d, W, H, horizon, rng) -> None:
    grey = (135, 135, 140)
    d.rectangle((W * 0.05, horizon - H * 0.25, W * 0.95, horizon), fill=grey)
    for tx in (0.05, 0.42, 0.8):
        d.rectangle((W * tx, horizon - H * 0.38, W * (tx + 0.15), horizon), fill=(120, 120, 126))
        for k in range(4):
            d.rectangle(
                (W * (tx + 0.04 * k), horizon - H * 0.41, W * (tx + 0.04 * k + 0.02), horizon - H * 0.38),
                fill=(120, 120, 126),
            )
    d.rectangle((W * 0.45, horizon - H * 0.12, W * 0.55, horizon), fill=(60, 45, 35))


def _water(d, W, H, horizon, rng, sand=True) -> None:
    d.rectangle((0, horizon, W, horizon + (H - horizon) * 0.55), fill=(40, 100, 160))
    for i in range(5):
        y = horizon + (H - horizon) * 0.55 * (i + 0.5) / 5
        d.line((0, y, W, y + rng.uniform(-3, 3)), fill=(150, 190, 220), width=max(1, min(W, H) // 300))
    if sand:
        d.rectangle((0, horizon + (H - horizon) * 0.55, W, H), fill=(225, 205, 150))


def _city(d, W, H, horizon, rng) -> None:
    x = 0.0
    while x < W:
        bw, bh = rng.uniform(0.06, 0.12) * W, rng.uniform(0.2, 0.45) * H
        g = rng.randint(50, 100)
        d.rectangle((x, horizon - bh, x + bw, horizon), fill=(g, g, g + 10))
        for wy in range(int(horizon - bh + 8), int(horizon - 6), 14):
            for wx in range(int(x + 5), int(x + bw - 5), 12):
                d.rectangle(
                    (wx, wy, wx + 4, wy + 6), fill=(240, 220, 130) if rng.random() < 0.4 else (40, 45, 60)
                )
        x += bw + rng.uniform(0, 0.02) * W


def _snow(d, W, H, horizon, rng) -> None:
    _mountains(d, W, H, horizon, rng, (225, 230, 240))
    d.rectangle((0, horizon, W, H), fill=(235, 240, 248))
    for _ in range(W * H // 3000):
        x, y, r = rng.uniform(0, W), rng.uniform(0, H), rng.uniform(1, 2.5)
        d.ellipse((x - r, y - r, x + r, y + r), fill=(250, 250, 255))


def _cave(d, W, H, horizon, rng, when="day") -> None:
    d.rectangle((0, 0, W, H), fill=(45, 40, 38))
    d.ellipse((W * 0.2, H * 0.05, W * 0.8, H * 0.9), fill=(70, 62, 55))


def _desert(d, W, H, horizon, rng) -> None:
    for k in range(3):
        y = horizon + (H - horizon) * k / 3
        d.ellipse(
            (rng.uniform(-0.3, 0.3) * W, y - H * 0.05, rng.uniform(0.7, 1.3) * W, y + H * 0.2),
            fill=(215, 185, 120),
        )


#: backdrop painters by the word a setting's name holds; interiors take the time of day for their window
OUTDOOR: dict[str, tuple[Callable[..., None], Colour]] = {
    "cliff": (_cliff, (90, 80, 70)),
    "mountain": (_mountains, (110, 105, 95)),
    "forest": (_trees, (40, 85, 40)),
    "wood": (_trees, (40, 85, 40)),
    "jungle": (_trees, (30, 90, 35)),
    "park": (lambda d, W, H, h, r: _trees(d, W, H, h, r, (3, 6)), (70, 130, 60)),
    "garden": (lambda d, W, H, h, r: _trees(d, W, H, h, r, (3, 6)), (70, 130, 60)),
    "meadow": (lambda d, W, H, h, r: None, (90, 150, 70)),
    "field": (lambda d, W, H, h, r: None, (110, 150, 70)),
    "camp": (_camp, (60, 80, 45)),
    "village": (_village, (100, 120, 70)),
    "castle": (_castle, (100, 100, 95)),
    "palace": (_castle, (120, 115, 100)),
    "beach": (_water, (225, 205, 150)),
    "sea": (_water, (40, 100, 160)),
    "ocean": (_water, (40, 100, 160)),
    "lake": (lambda d, W, H, h, r: _water(d, W, H, h, r, sand=False), (60, 110, 60)),
    "river": (lambda d, W, H, h, r: _water(d, W, H, h, r, sand=False), (60, 110, 60)),
    "harbour": (_water, (90, 90, 95)),
    "city": (_city, (70, 70, 75)),
    "street": (_city, (70, 70, 75)),
    "town": (_village, (90, 90, 80)),
    "market": (_village, (120, 100, 70)),
    "rooftop": (_city, (80, 80, 85)),
    "snow": (_snow, (235, 240, 248)),
    "snowfield": (_snow, (235, 240, 248)),
    "arctic": (_snow, (235, 240, 248)),
    "desert": (_desert, (205, 175, 110)),
    "battlefield": (_mountains, (100, 85, 60)),
    "ruins": (_castle, (110, 100, 85)),
}
INDOOR: dict[str, Callable[..., None]] = {
    "tavern": _tavern,
    "inn": _tavern,
    "bar": _tavern,
    "pub": _tavern,
    "library": _library,
    "room": _library,
    "office": _library,
    "house": _tavern,
    "kitchen": _tavern,
    "cafe": _tavern,
    "classroom": _library,
    "cave": _cave,
    "dungeon": _cave,
    "temple": _library,
}


def draw_backdrop(
    W: int, H: int, story: SceneState, rng: random.Random, lay: Layout
) -> tuple[Image.Image, float]:
    """The backdrop of the scene's setting at its time of day; returns the image and the light level (0..1)."""
    when = time_of_day(story)
    top, bottom, light = TIMES[when]
    horizon = int(H * rng.uniform(0.55, 0.65))
    arr = np.empty((H, W, 3), dtype=np.uint8)
    _gradient(arr, 0, horizon, top, bottom)
    setting = story.setting[0] if story.setting else ""
    words = setting.replace("-", " ").split()
    indoor = next((INDOOR[w] for w in words if w in INDOOR), None)
    outdoor = next((OUTDOOR[w] for w in words if w in OUTDOOR), None)
    ground = outdoor[1] if outdoor else (100, 120, 70)
    _gradient(arr, horizon, H, tuple(round(c * 1.15) for c in ground), ground)  # type: ignore[arg-type]
    img = Image.fromarray(arr, "RGB")
    d = ImageDraw.Draw(img)
    if indoor is not None:
        indoor(d, W, H, horizon, rng, when)
    else:
        _sky_things(d, W, H, horizon, when, rng)
        if outdoor is not None:
            outdoor[0](d, W, H, horizon, rng)
    if setting:
        if indoor is None and outdoor is None:
            lay.not_drawn.append(f"{setting} (no backdrop for it)")
        else:
            lay.add("setting", setting, (0, 0, W, H))
    return img, light


def paste_face(
    img: Image.Image,
    face: FaceCrop,
    cx: float,
    cy: float,
    face_w: float,
    seed: int,
    *,
    tilt: float = 0.0,
    light: tuple[float, float] = (1.0, 1.0),
) -> None:
    """Scale the crop so the face box is `face_w` wide, centre the face box at (cx, cy), turn it by `tilt` degrees
    and light it from one side (`light`: gain on the image's left and right edges); the margin is blended."""
    l, t, r, b = face.face_box
    scale = face_w / max(1, r - l)
    cw, ch = max(1, round(face.image.width * scale)), max(1, round(face.image.height * scale))
    crop = face.image.resize((cw, ch), Image.LANCZOS)
    if light != (1.0, 1.0):
        gain = np.linspace(light[0], light[1], cw, dtype=np.float32)[None, :, None]
        crop = Image.fromarray(np.clip(np.asarray(crop, dtype=np.float32) * gain, 0, 255).astype(np.uint8))
    fx, fy = (l + r) / 2 * scale, (t + b) / 2 * scale
    # elliptical mask; only its outer rim is feathered, the face itself stays sharp
    mask = Image.new("L", (cw, ch), 0)
    md = ImageDraw.Draw(mask)
    inset_x, inset_y = cw * 0.06, ch * 0.05
    md.ellipse((inset_x, inset_y, cw - inset_x, ch - inset_y), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(radius=max(1.0, cw * 0.04)))
    if tilt:
        crop = crop.rotate(tilt, resample=Image.BICUBIC, center=(fx, fy))
        mask = mask.rotate(tilt, resample=Image.BICUBIC, center=(fx, fy))
    img.paste(crop, (round(cx - fx), round(cy - fy)), mask)


def _caption(img: Image.Image, lay: Layout) -> None:
    """A strip along the bottom: the renderer's label and what it did not draw."""
    W, H = img.size
    text = "offline/compositor"
    if lay.not_drawn:
        text += " | not drawn: " + "; ".join(lay.not_drawn)
    size = max(10, min(18, W // 48))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    d = ImageDraw.Draw(img)
    height = size + 8
    d.rectangle((0, H - height, W, H), fill=(20, 20, 24))
    d.text((6, H - height + 3), text, fill=(235, 235, 235), font=font)
    lay.boxes["caption"] = (0, H - height, W, H)


def draw_figure(
    img: Image.Image,
    rng: random.Random,
    face: FaceCrop | None,
    story: SceneState,
    cx: float,
    cy: float,
    face_w: float,
    tilt: float,
    gains: tuple[float, float],
    light: float,
    lay: Layout,
    face_key: str = "face",
) -> None:
    """One character: body, garments, props and injuries from its own story state, and its face."""
    d = ImageDraw.Draw(img)
    fig = Figure(cx=cx, cy=cy, face_w=face_w, tilt=tilt, top=cy + face_w * 0.8, shoulder_w=face_w * 1.3)
    clothing, props = list(story.clothing), list(story.props)
    draw_character_items(d, fig, clothing, props, lay, "back")
    plain = (rng.randint(40, 200), rng.randint(40, 200), rng.randint(40, 200))
    d.ellipse(fig.torso, fill=tuple(round(c * light) for c in plain))
    draw_character_items(d, fig, clothing, props, lay, "body")
    lay.boxes["torso" if face_key == "face" else f"torso:{face_key}"] = fig.torso
    d.rectangle(
        (cx - face_w * 0.22, cy + face_w * 0.4, cx + face_w * 0.22, fig.top + face_w * 0.2),
        fill=(200, 160, 130),
    )
    if face is not None:
        paste_face(img, face, cx, cy, face_w, rng.randrange(2**31), tilt=tilt, light=gains)
    else:
        r = face_w * 0.55
        d.ellipse((cx - r, cy - r * 1.25, cx + r, cy + r * 1.25), fill=(215, 175, 145))
    lay.boxes[face_key] = (cx - face_w / 2, cy - face_w * 0.6, cx + face_w / 2, cy + face_w * 0.6)
    draw_character_items(d, fig, clothing, props, lay, "front")
    for name in story.injuries:
        if not draw_injury(d, fig, name, lay):
            lay.not_drawn.append(f"{name} (no painter)")


#: where a placed character stands, as a share of the width
PLACE_X = {"left": 0.24, "center": 0.5, "right": 0.76}


def compose_cast(
    W: int,
    H: int,
    rng: random.Random,
    members: list[tuple[str, FaceCrop | None, SceneState, str]],
    shared: SceneState | None = None,
) -> tuple[Image.Image, Layout]:
    """A scene of several characters, each (name, face, own state, placement) drawn at its place (unplaced ones
    fill the free places left to right) on a backdrop of the shared setting. Each one's clothing, props and
    injuries are its own."""
    shared = shared or SceneState()
    lay = Layout()
    img, light = draw_backdrop(W, H, SceneState(setting=shared.setting, mood=shared.mood), rng, lay)
    n = len(members)
    xs = [PLACE_X.get(placement, (k + 0.5) / n) for k, (_, _, _, placement) in enumerate(members)]
    s = min(W, H)
    face_w = max(8.0, 0.17 * s if n > 2 else 0.2 * s)
    for (name, face, story, _), x in zip(members, xs, strict=True):
        before = len(lay.drawn)
        draw_figure(
            img,
            rng,
            face,
            story,
            W * x,
            H * rng.uniform(0.38, 0.44),
            face_w,
            0.0,
            (light, light),
            light,
            lay,
            face_key=f"face:{name}",
        )
        lay.drawn[before:] = [(c, f"{item} ({name})") for c, item in lay.drawn[before:]]
    lay.not_drawn.extend(f"mood {mood} (the faces are the references')" for mood in shared.mood)
    _caption(img, lay)
    return img, lay


def compose_scene(
    W: int,
    H: int,
    rng: random.Random,
    face: FaceCrop | None,
    story: SceneState | None = None,
    char_x: float | None = None,
    caption: bool = True,
    pose: bool = True,
) -> tuple[Image.Image, Layout]:
    """The scene and where each part of the story was drawn. `char_x` moves the character (video frames);
    `pose=False` keeps the face upright and evenly lit (a distorted drift face is hard enough to find)."""
    story = story or SceneState()
    lay = Layout()
    img, light = draw_backdrop(W, H, story, rng, lay)
    s = min(W, H)
    base_w = max(8.0, min(250.0, max(150.0, 0.24 * s)) if s >= 600 else 0.26 * s)
    face_w = base_w * rng.uniform(0.88, 1.12)
    cx = W * rng.uniform(0.38, 0.62)  # drawn even when `char_x` is given: the rest of the scene stays put
    cx = char_x if char_x is not None else cx
    cy = H * rng.uniform(0.38, 0.44)
    tilt = rng.uniform(-9.0, 9.0)
    side = rng.uniform(0.7, 1.0)
    gains = (light * side, light * 1.1) if rng.random() < 0.5 else (light * 1.1, light * side)
    if not pose:
        face_w, cy, tilt, gains = base_w, H * 0.42, 0.0, (1.0, 1.0)
    draw_figure(img, rng, face, story, cx, cy, face_w, tilt, gains, light, lay)
    lay.not_drawn.extend(f"mood {mood} (the face is the reference's)" for mood in story.mood)
    if caption:
        _caption(img, lay)
    return img, lay
