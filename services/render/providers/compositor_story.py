"""What the offline compositor draws on the character from the story state: garments on the body, props in hand or
on the back, injuries on the face at the named side. Each painter says where it drew (a `Layout` box), and a name
no painter knows is returned as not drawn, so the caption can list it.

Sides are the character's own: the character faces the viewer, so "left cheek" is on the image's right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PIL import ImageDraw

Box = tuple[float, float, float, float]
Colour = tuple[int, int, int]

COLOURS: dict[str, Colour] = {
    "red": (180, 30, 35),
    "crimson": (150, 20, 40),
    "blue": (40, 70, 170),
    "green": (40, 130, 60),
    "black": (25, 25, 28),
    "white": (230, 230, 230),
    "gold": (200, 160, 40),
    "golden": (200, 160, 40),
    "yellow": (220, 200, 50),
    "purple": (110, 50, 140),
    "brown": (110, 70, 40),
    "leather": (120, 80, 45),
    "orange": (220, 120, 40),
    "grey": (120, 120, 125),
    "silver": (200, 205, 215),
    "steel": (165, 170, 180),
    "iron": (110, 112, 118),
    "pink": (220, 130, 160),
    "wooden": (130, 90, 50),
}


@dataclass
class Figure:
    """Where the character stands: face centre, face width and tilt (degrees), shoulders' top and half width."""

    cx: float
    cy: float
    face_w: float
    tilt: float
    top: float
    shoulder_w: float

    def on_face(self, dx: float, dy: float) -> tuple[float, float]:
        """A point given in face widths from the face centre, turned with the head's tilt."""
        a = math.radians(-self.tilt)
        x, y = dx * self.face_w, dy * self.face_w
        return self.cx + x * math.cos(a) - y * math.sin(a), self.cy + x * math.sin(a) + y * math.cos(a)

    @property
    def torso(self) -> Box:
        return (self.cx - self.shoulder_w, self.top, self.cx + self.shoulder_w, self.top + self.face_w * 2.2)

    def hand(self, side: str) -> tuple[float, float]:
        """The hand on the character's `side` (the character's right hand is on the image's left)."""
        sign = -1 if side == "right" else 1
        return self.cx + sign * self.shoulder_w * 0.92, self.top + self.face_w * 0.95


@dataclass
class Layout:
    """What was drawn where, and what was not drawn (shown in the caption)."""

    boxes: dict[str, Box] = field(default_factory=dict)
    drawn: list[tuple[str, str]] = field(default_factory=list)
    not_drawn: list[str] = field(default_factory=list)

    def add(self, category: str, name: str, box: Box) -> None:
        self.drawn.append((category, name))
        self.boxes[f"{category}:{name}"] = box


def colour_of(name: str, default: Colour) -> Colour:
    return next((COLOURS[w] for w in name.split() if w in COLOURS), default)


def _shade(c: Colour, f: float) -> Colour:
    return tuple(max(0, min(255, round(v * f))) for v in c)  # type: ignore[return-value]


def kind_of(name: str, kinds) -> str | None:
    words = name.replace("-", " ").split()
    return next((k for k in kinds if k in words or (" " in k and k in name)), None)


# --- garments -------------------------------------------------------------------------------------------------

#: garments drawn behind the body (before the torso)
BACK_GARMENTS = ("cloak", "cape")
BODY_GARMENTS = (
    "armour", "dress", "gown", "robe", "jacket", "coat", "raincoat", "hoodie", "shirt", "t shirt", "tunic",
    "sweater", "vest", "uniform", "suit", "apron", "kimono", "overalls",
)  # fmt: skip
HEAD_GARMENTS = ("helmet", "hat", "crown", "tiara", "hood", "bandana")
NECK_GARMENTS = ("scarf", "tie")
#: garments of a body part the half-length figure does not show
OUT_OF_FRAME = (
    "boots",
    "boot",
    "shoe",
    "shoes",
    "sneaker",
    "sneakers",
    "jeans",
    "trousers",
    "skirt",
    "glove",
)


def draw_back_garment(d: ImageDraw.ImageDraw, f: Figure, name: str, lay: Layout) -> bool:
    if kind_of(name, BACK_GARMENTS) is None:
        return False
    col = colour_of(name, (120, 30, 35))
    x0, y0, x1, y1 = f.torso
    w = f.shoulder_w
    poly = [(f.cx - w * 0.8, y0 + 4), (f.cx + w * 0.8, y0 + 4), (x1 + w * 0.35, y1), (x0 - w * 0.35, y1)]
    d.polygon(poly, fill=col)
    lay.add("clothing", name, (x0 - w * 0.35, y0, x1 + w * 0.35, y1))
    return True


def draw_body_garment(d: ImageDraw.ImageDraw, f: Figure, name: str, lay: Layout) -> bool:
    kind = kind_of(name, BODY_GARMENTS)
    if kind is None:
        return False
    x0, y0, x1, y1 = f.torso
    fw = f.face_w
    if kind == "armour":
        steel = colour_of(name, (150, 156, 168))
        d.ellipse(f.torso, fill=steel)
        for k in range(1, 5):  # overlapping plates
            y = y0 + fw * 0.35 * k
            d.arc(
                (x0 + fw * 0.1, y - fw * 0.3, x1 - fw * 0.1, y + fw * 0.3),
                20,
                160,
                fill=_shade(steel, 0.6),
                width=3,
            )
        for sx in (x0 + fw * 0.2, x1 - fw * 0.2):  # pauldrons with rivets
            r = fw * 0.42
            d.ellipse(
                (sx - r, y0 - r * 0.2, sx + r, y0 + r * 1.4),
                fill=_shade(steel, 1.12),
                outline=_shade(steel, 0.5),
            )
            d.ellipse((sx - 4, y0 + r * 0.5 - 4, sx + 4, y0 + r * 0.5 + 4), fill=_shade(steel, 0.45))
    elif kind in ("dress", "gown", "robe", "kimono"):
        col = colour_of(name, (120, 60, 150) if kind != "robe" else (90, 70, 55))
        d.polygon(
            [
                (x0 + fw * 0.2, y0 + fw * 0.2),
                (x1 - fw * 0.2, y0 + fw * 0.2),
                (x1 + fw * 0.4, y1),
                (x0 - fw * 0.4, y1),
            ],
            fill=col,
        )
        d.ellipse((x0 + fw * 0.1, y0, x1 - fw * 0.1, y0 + fw * 0.9), fill=col)
        d.line(
            (x0 + fw * 0.3, y0 + fw * 1.1, x1 - fw * 0.3, y0 + fw * 1.1),
            fill=_shade(col, 0.6),
            width=max(2, round(fw * 0.08)),
        )
    else:  # jackets, coats, shirts: the body in the garment's colour, a collar and buttons
        col = colour_of(
            name, (60, 80, 110) if kind in ("jacket", "coat", "raincoat", "suit") else (200, 200, 190)
        )
        d.ellipse(f.torso, fill=col)
        d.polygon(
            [(f.cx - fw * 0.35, y0 + fw * 0.05), (f.cx, y0 + fw * 0.7), (f.cx + fw * 0.35, y0 + fw * 0.05)],
            fill=_shade(col, 0.7),
        )
        for k in range(3):
            by = y0 + fw * (0.85 + 0.3 * k)
            d.ellipse((f.cx - 4, by - 4, f.cx + 4, by + 4), fill=_shade(col, 0.4))
    lay.add("clothing", name, f.torso)
    return True


def draw_head_garment(d: ImageDraw.ImageDraw, f: Figure, name: str, lay: Layout) -> bool:
    kind = kind_of(name, HEAD_GARMENTS + NECK_GARMENTS)
    if kind is None:
        return False
    fw = f.face_w
    if kind in NECK_GARMENTS:
        col = colour_of(name, (170, 40, 40))
        box = (f.cx - fw * 0.45, f.top - fw * 0.1, f.cx + fw * 0.45, f.top + fw * 0.25)
        d.rounded_rectangle(box, radius=fw * 0.1, fill=col)
    else:  # above the forehead, clear of the face
        col = colour_of(
            name,
            {"crown": (205, 165, 40), "tiara": (205, 200, 210), "helmet": (150, 156, 168)}.get(
                kind, (70, 50, 40)
            ),
        )
        bx, by = f.on_face(0, -0.95)
        box = (bx - fw * 0.55, by - fw * 0.35, bx + fw * 0.55, by + fw * 0.12)
        if kind in ("crown", "tiara"):
            x0, y0, x1, y1 = box
            pts = (
                [(x0, y1)]
                + [(x0 + (x1 - x0) * k / 6, y0 if k % 2 else y1 - (y1 - y0) * 0.4) for k in range(7)]
                + [(x1, y1)]
            )
            d.polygon(pts, fill=col)
        else:
            d.chord(box, 180, 360, fill=col)
            d.rectangle(
                (box[0] - fw * 0.12, by - fw * 0.02, box[2] + fw * 0.12, by + fw * 0.1), fill=_shade(col, 0.8)
            )
    lay.add("clothing", name, box)
    return True


# --- props ----------------------------------------------------------------------------------------------------

HELD_PROPS = (
    "sword", "dagger", "knife", "axe", "spear", "staff", "wand", "torch", "lantern", "shield", "book", "map",
    "scroll", "letter", "umbrella", "cup", "mug", "potion", "flower", "bouquet", "key", "phone", "hammer",
    "rifle", "gun", "pistol", "compass", "telescope", "guitar", "camera", "briefcase", "basket", "bag",
)  # fmt: skip
BACK_PROPS = ("bow", "backpack", "quiver", "arrow")
CHEST_PROPS = ("amulet", "necklace", "ring")
_LONG = ("sword", "spear", "staff", "axe", "torch", "umbrella", "rifle", "gun", "hammer", "telescope", "wand")


def draw_held(d: ImageDraw.ImageDraw, f: Figure, name: str, side: str, lay: Layout) -> None:
    kind = kind_of(name, HELD_PROPS) or "bag"
    hx, hy = f.hand(side)
    fw = f.face_w
    out = -1 if side == "right" else 1  # away from the body
    if kind in _LONG:
        default = (200, 205, 215) if kind in ("sword", "spear") else (120, 85, 50)
        col = colour_of(name, default)
        length = fw * (2.1 if kind in ("sword", "spear", "staff", "rifle", "telescope") else 1.5)
        tx, ty = hx + out * fw * 0.25, hy - length
        width = max(3, round(fw * (0.09 if kind in ("sword", "axe", "hammer") else 0.06)))
        d.line((hx, hy + fw * 0.25, tx, ty), fill=col, width=width)
        d.line(
            (hx, hy + fw * 0.25, hx + (tx - hx) * 0.18, hy + fw * 0.25 + (ty - hy - fw * 0.25) * 0.18),
            fill=(80, 50, 30),
            width=width + 2,
        )
        if kind == "sword":
            gx, gy = hx + (tx - hx) * 0.2, hy + fw * 0.25 + (ty - hy - fw * 0.25) * 0.2
            d.line((gx - fw * 0.28, gy, gx + fw * 0.28, gy), fill=(170, 140, 60), width=width)
        elif kind in ("axe", "hammer"):
            d.polygon(
                [
                    (tx, ty),
                    (tx + out * fw * 0.45, ty + fw * 0.1),
                    (tx + out * fw * 0.4, ty + fw * 0.45),
                    (tx, ty + fw * 0.35),
                ],
                fill=(150, 155, 165),
            )
        elif kind == "torch":
            d.ellipse((tx - fw * 0.16, ty - fw * 0.35, tx + fw * 0.16, ty + fw * 0.05), fill=(250, 150, 40))
        elif kind == "staff":
            d.ellipse((tx - fw * 0.14, ty - fw * 0.14, tx + fw * 0.14, ty + fw * 0.14), fill=(120, 200, 240))
        elif kind == "spear":
            d.polygon(
                [(tx - fw * 0.09, ty + fw * 0.1), (tx, ty - fw * 0.25), (tx + fw * 0.09, ty + fw * 0.1)],
                fill=col,
            )
        box = (min(hx, tx) - fw * 0.3, ty - fw * 0.35, max(hx, tx) + fw * 0.3, hy + fw * 0.35)
    elif kind == "shield":
        col = colour_of(name, (140, 40, 40))
        r = fw * 0.6
        box = (hx - r, hy - r, hx + r, hy + r)
        d.ellipse(box, fill=col, outline=(190, 170, 90), width=max(3, round(fw * 0.06)))
        d.ellipse((hx - r * 0.2, hy - r * 0.2, hx + r * 0.2, hy + r * 0.2), fill=(200, 180, 100))
    elif kind == "lantern":
        s = fw * 0.28
        box = (hx - s, hy - s * 1.6, hx + s, hy + s)
        d.ellipse((hx - s * 2, hy - s * 2.4, hx + s * 2, hy + s * 1.6), fill=(255, 225, 140))
        d.rectangle(
            (hx - s, hy - s * 1.2, hx + s, hy + s), fill=(250, 200, 80), outline=(60, 50, 40), width=3
        )
        d.line((hx, hy - s * 1.6, hx, hy - s * 1.2), fill=(60, 50, 40), width=3)
    else:  # small things held in the hand: a coloured block of the object's rough size
        col = colour_of(
            name,
            (150, 110, 70)
            if kind in ("book", "map", "scroll", "letter", "basket", "briefcase")
            else (90, 90, 100),
        )
        s = fw * (0.35 if kind in ("book", "map", "briefcase", "basket", "guitar", "bag") else 0.2)
        box = (hx - s, hy - s, hx + s, hy + s * 1.2)
        d.rounded_rectangle(box, radius=max(1, s * 0.2), fill=col, outline=_shade(col, 0.5), width=2)
    lay.add("props", name, box)


def draw_back_prop(d: ImageDraw.ImageDraw, f: Figure, name: str, lay: Layout) -> None:
    fw = f.face_w
    kind = kind_of(name, BACK_PROPS)
    _x0, y0, _, _ = f.torso
    if kind == "backpack":
        col = colour_of(name, (110, 80, 50))
        box = (f.cx - f.shoulder_w * 1.15, y0 - fw * 0.1, f.cx + f.shoulder_w * 1.15, y0 + fw * 1.6)
        d.rounded_rectangle(box, radius=fw * 0.2, fill=col)
    else:  # a bow (and arrows) across the back, showing over the shoulder
        col = colour_of(name, (120, 80, 40))
        box = (f.cx + f.shoulder_w * 0.2, y0 - fw * 1.3, f.cx + f.shoulder_w * 1.3, y0 + fw * 1.2)
        d.arc(box, 250, 110, fill=col, width=max(3, round(fw * 0.07)))
        d.line(
            (box[0] + (box[2] - box[0]) * 0.5, box[1] + 4, box[0] + (box[2] - box[0]) * 0.5, box[3] - 4),
            fill=(230, 230, 220),
            width=1,
        )
    lay.add("props", name, box)


def draw_chest_prop(d: ImageDraw.ImageDraw, f: Figure, name: str, lay: Layout) -> None:
    fw = f.face_w
    col = colour_of(name, (205, 165, 40))
    y = f.top + fw * 0.45
    box = (f.cx - fw * 0.12, y - fw * 0.12, f.cx + fw * 0.12, y + fw * 0.12)
    d.line((f.cx - fw * 0.3, f.top, f.cx, y, f.cx + fw * 0.3, f.top), fill=col, width=2)
    d.ellipse(box, fill=col)
    lay.add("props", name, box)


# --- injuries -------------------------------------------------------------------------------------------------

#: where on the face, in face widths from its centre (x on the character's LEFT is +, i.e. the image's right)
FACE_PLACES: dict[str, tuple[float, float]] = {
    "cheek": (0.32, 0.16),
    "eye": (0.2, -0.08),
    "forehead": (0.1, -0.36),
    "brow": (0.2, -0.22),
    "eyebrow": (0.2, -0.22),
    "temple": (0.4, -0.2),
    "chin": (0.05, 0.44),
    "jaw": (0.3, 0.34),
    "nose": (0.0, 0.05),
    "lip": (0.08, 0.3),
    "mouth": (0.1, 0.3),
}
INJURY_KINDS = (
    "black eye", "cut", "gash", "scratch", "laceration", "wound", "bleeding", "graze", "bruise", "scar", "burn",
    "bandage", "sling", "broken arm",
)  # fmt: skip


def injury_place(name: str) -> tuple[str, str]:
    """(side, place) named in an injury ("cut on left cheek" -> ("left", "cheek")); defaults: left cheek."""
    words = name.split()
    side = "right" if "right" in words else "left"
    place = next((w for w in words if w in FACE_PLACES), "eye" if "black eye" in name else "cheek")
    return side, place


def draw_injury(d: ImageDraw.ImageDraw, f: Figure, name: str, lay: Layout) -> bool:
    kind = kind_of(name, INJURY_KINDS)
    if kind is None:
        return False
    fw = f.face_w
    if kind in ("sling", "broken arm"):
        x0, y0, x1, _ = f.torso
        d.line(
            (x0 + fw * 0.3, y0 + fw * 0.2, x1 - fw * 0.2, y0 + fw * 1.3),
            fill=(235, 235, 230),
            width=max(4, round(fw * 0.18)),
        )
        lay.add("injuries", name, (x0, y0, x1, y0 + fw * 1.4))
        return True
    side, place = injury_place(name)
    dx, dy = FACE_PLACES[place]
    x, y = f.on_face(dx if side == "left" else -dx, dy)
    s = fw * 0.1
    if kind in ("cut", "gash", "scratch", "laceration", "wound", "bleeding", "graze"):
        w = max(2, round(fw * 0.025))
        d.line((x - s * 1.3, y - s * 0.7, x + s * 1.3, y + s * 0.7), fill=(120, 10, 15), width=w + 2)
        d.line((x - s * 1.2, y - s * 0.65, x + s * 1.2, y + s * 0.65), fill=(215, 30, 35), width=w)
    elif kind in ("bruise", "black eye"):
        d.ellipse((x - s * 1.3, y - s, x + s * 1.3, y + s), fill=(95, 60, 120))
    elif kind == "scar":
        d.line(
            (x - s * 1.2, y + s * 0.8, x + s * 1.2, y - s * 0.8),
            fill=(225, 150, 150),
            width=max(2, round(fw * 0.02)),
        )
        for k in (-0.6, 0.0, 0.6):
            d.line(
                (
                    x + s * k - s * 0.3,
                    y - s * k * 0.66 - s * 0.3,
                    x + s * k + s * 0.3,
                    y - s * k * 0.66 + s * 0.3,
                ),
                fill=(200, 120, 120),
                width=1,
            )
    elif kind == "burn":
        d.ellipse((x - s * 1.2, y - s, x + s * 1.2, y + s), fill=(170, 70, 50))
    else:  # bandage
        d.rectangle(
            (x - s * 1.4, y - s * 0.7, x + s * 1.4, y + s * 0.7),
            fill=(240, 235, 220),
            outline=(200, 190, 170),
        )
        d.line((x - s * 1.4, y, x + s * 1.4, y), fill=(200, 190, 170), width=1)
    lay.add("injuries", name, (x - s * 1.5, y - s * 1.2, x + s * 1.5, y + s * 1.2))
    return True


def draw_character_items(
    d: ImageDraw.ImageDraw,
    f: Figure,
    clothing: list[str],
    props: list[str],
    lay: Layout,
    stage: str,
) -> None:
    """One drawing stage of the character's items: "back" (behind the body), "body", "front" (over the face)."""
    if stage == "back":
        for name in clothing:
            draw_back_garment(d, f, name, lay)
        for name in props:
            if kind_of(name, BACK_PROPS) and not kind_of(name, HELD_PROPS):
                draw_back_prop(d, f, name, lay)
        return
    if stage == "body":
        for name in clothing:
            if kind_of(name, BACK_GARMENTS) is None:
                draw_body_garment(d, f, name, lay)
        return
    drawn = {n for _, n in lay.drawn}
    for name in clothing:
        if name in drawn:
            continue
        if not draw_head_garment(d, f, name, lay):
            why = "out of frame" if kind_of(name, OUT_OF_FRAME) else "no painter"
            lay.not_drawn.append(f"{name} ({why})")
    hands = ["right", "left"]
    for name in props:
        if name in drawn:
            continue
        if kind_of(name, CHEST_PROPS):
            draw_chest_prop(d, f, name, lay)
        elif kind_of(name, HELD_PROPS):
            if not hands:
                lay.not_drawn.append(f"{name} (no free hand)")
                continue
            draw_held(d, f, name, hands.pop(0), lay)
        else:
            lay.not_drawn.append(f"{name} (no painter)")
