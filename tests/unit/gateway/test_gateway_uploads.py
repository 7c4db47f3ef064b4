"""Upload cleaning: metadata dropped, orientation applied, size and count caps with clear messages."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gateway.errors import ApiError
from gateway.uploads import check_count, check_forwardable, check_sizes, clean_image


def _jpeg(width: int, height: int, *, orientation: int = 1) -> bytes:
    img = Image.new("RGB", (width, height), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SpyCamMaker"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes())
    return buf.getvalue()


def test_exif_is_dropped_and_orientation_applied() -> None:
    clean = clean_image(_jpeg(40, 20, orientation=6), name="image 1", max_pixels=10_000)
    assert clean.mime == "image/jpeg" and (clean.width, clean.height) == (20, 40)  # rotated upright
    assert b"SpyCamMaker" not in clean.data and b"Exif" not in clean.data
    with Image.open(io.BytesIO(clean.data)) as im:
        assert im.size == (20, 40) and len(im.getexif()) == 0


def test_png_with_alpha_becomes_png() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 4), dtype=np.uint8)).save(buf, format="PNG")
    clean = clean_image(buf.getvalue(), name="image 1", max_pixels=10_000)
    assert clean.mime == "image/png" and clean.extension == "png"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"%PDF-1.7 not an image", "is not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 10, "image 3"),
    ],
)
def test_bad_data_is_a_400_naming_the_file(data: bytes, fragment: str) -> None:
    with pytest.raises(ApiError) as info:
        clean_image(data, name="image 3", max_pixels=10_000)
    assert info.value.status == 400 and fragment in info.value.message


def test_pixel_bombs_are_refused() -> None:
    with pytest.raises(ApiError, match="decompression bomb"):
        clean_image(_jpeg(200, 200), name="image 1", max_pixels=1000)


def test_size_and_count_caps() -> None:
    check_sizes([("image 1", 10), ("image 2", 10)], per_file=10, total=20)
    with pytest.raises(ApiError) as info:
        check_sizes([("image 1 (a.png)", 11)], per_file=10, total=100)
    assert info.value.status == 413 and "image 1 (a.png) is 11 bytes" in info.value.message
    with pytest.raises(ApiError, match="total 30 bytes"):
        check_sizes([("a", 10), ("b", 10), ("c", 10)], per_file=10, total=25)
    with pytest.raises(ApiError, match="at least one"):
        check_count(0, most=5)
    with pytest.raises(ApiError, match="at most 5 reference images are accepted, got 6"):
        check_count(6, most=5)
    clean = clean_image(_jpeg(10, 10), name="x", max_pixels=1000)
    with pytest.raises(ApiError, match="the mesh accepts"):
        check_forwardable([clean, clean], len(clean.data))
