"""Synthetic images for the trainer tests: sharp distinct textures, blurred and near-duplicate variants."""

from __future__ import annotations

import io

import numpy as np


def png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def textured(seed: int, side: int = 64) -> np.ndarray:
    """A sharp, distinct image: 8 x 8 blocks of random colours (other seeds: other perceptual hashes)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((side // 8, side // 8, 1), dtype=np.uint8))


def blurred(arr: np.ndarray, radius: float = 6.0) -> np.ndarray:
    from PIL import Image, ImageFilter

    return np.asarray(Image.fromarray(arr).filter(ImageFilter.GaussianBlur(radius)))


def near_duplicate(arr: np.ndarray) -> np.ndarray:
    """The same picture, a little brighter (a pHash twin)."""
    return np.clip(arr.astype(np.int16) + 3, 0, 255).astype(np.uint8)


def alternating_scorer():
    """A stand-in for validation's identity scorer (a tiny random model draws no face to score): validate() scores
    the new LoRA's render, then the baseline's, for each scene and seed, and they read 0.9 against 0.5."""

    async def factory(character_id: str):
        calls = iter(range(1_000_000))
        return lambda image: 0.9 if next(calls) % 2 == 0 else 0.5

    return factory
