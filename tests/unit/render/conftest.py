"""Fixtures for the render unit tests."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:  # `tests.fakes` importable when pytest runs from anywhere
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _png(arr) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def astronaut_png() -> bytes:
    from skimage import data

    return _png(data.astronaut())


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    d = Path(os.environ.get("IDLOCK_FACES_DIR", "/work/shared/faces"))
    if not d.is_dir() or not any(d.glob("*/*.jpg")):
        pytest.skip(f"real face photos not present at {d} (set IDLOCK_FACES_DIR)")
    return d
