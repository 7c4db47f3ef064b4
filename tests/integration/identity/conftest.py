"""Fixtures for the identity integration tests: the engine (models loaded once) and the real face photos.

The photos are read from IDLOCK_FACES_DIR (default <repo>/../shared/faces) and never copied into the repo; tests
that need them are skipped with a reason when the folder is absent.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from idlock.faces.engine import IdentityEngine, get_engine
from idlock.images import DecodedImage, load_image
from services.identity.settings import IdentitySettings

REPO = Path(__file__).resolve().parents[3]


def faces_dir() -> Path:
    return Path(os.environ.get("IDLOCK_FACES_DIR", REPO.parent / "shared" / "faces"))


@pytest.fixture(scope="session")
def engine() -> IdentityEngine:
    return get_engine(IdentitySettings(encoder="dlib"))


@pytest.fixture(scope="session")
def faces_root() -> Path:
    d = faces_dir()
    if not (d / "pairs.csv").is_file():
        pytest.skip(f"real face photos not found at {d} (set IDLOCK_FACES_DIR)")
    return d


@pytest.fixture(scope="session")
def identities(faces_root: Path) -> dict[str, list[Path]]:
    """identity folder -> its photos (sorted), from pairs.csv."""
    groups: dict[str, set[Path]] = defaultdict(set)
    with (faces_root / "pairs.csv").open() as fh:
        for row in csv.DictReader(fh):
            for key in ("a", "b"):
                p = faces_root / row[key]
                groups[p.parent.name].add(p)
    return {k: sorted(v) for k, v in sorted(groups.items())}


_CACHE: dict[Path, DecodedImage] = {}


@pytest.fixture(scope="session")
def photo():
    """photo(path) -> DecodedImage, decoded once per session."""
    return _photo


@pytest.fixture(scope="session")
def resized():
    """resized(pixels, height) -> the array scaled to that height."""
    return _resized


def _photo(path: Path) -> DecodedImage:
    """Decode a photo once per test session."""
    if path not in _CACHE:
        _CACHE[path] = load_image(path)
    return _CACHE[path]


def _resized(pixels: np.ndarray, height: int) -> np.ndarray:
    import cv2

    h, w = pixels.shape[:2]
    return cv2.resize(pixels, (max(1, round(w * height / h)), height), interpolation=cv2.INTER_AREA)
