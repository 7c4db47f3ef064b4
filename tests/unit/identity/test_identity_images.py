"""Input hardening of idlock.images: every bad input gives InvalidInput with a message that says what is wrong."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from idlock.errors import InvalidInput
from idlock.images import DecodedImage, decode_image, encode_jpeg, encode_png, load_image


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _gradient(w: int = 64, h: int = 48) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None, None]
    return np.concatenate(
        [np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)), np.full((h, w, 1), 128.0)], axis=2
    ).astype(np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height: enough for the size check, never decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------------------------ bad inputs


def test_empty_bytes() -> None:
    with pytest.raises(InvalidInput, match=r"^image is empty \(0 bytes\)$"):
        decode_image(b"")


def test_none() -> None:
    with pytest.raises(InvalidInput, match="is empty: no data"):
        decode_image(None)  # type: ignore[arg-type]


def test_not_an_image() -> None:
    with pytest.raises(InvalidInput, match=r"^scene is not an image \(unrecognised data: 11 bytes") as ei:
        decode_image(b"hello world", name="scene")
    assert ei.value.details["reason"] == "not_an_image"


def test_truncated_jpeg() -> None:
    data = _jpeg(Image.fromarray(_gradient(256, 256)), quality=90)
    with pytest.raises(
        InvalidInput, match=r"truncated or corrupt: pixel data cannot be decoded \(JPEG"
    ) as ei:
        decode_image(data[: len(data) // 2])
    assert ei.value.details["reason"] == "truncated"


def test_truncated_png_header() -> None:
    data = _png(Image.fromarray(_gradient()))
    with pytest.raises(
        InvalidInput,
        match=r"^image is truncated or corrupt: it starts like a PNG file but its header cannot be read \(30 bytes\)$",
    ):
        decode_image(data[:30])


def test_unsupported_format() -> None:
    buf = io.BytesIO()
    Image.fromarray(_gradient()).save(buf, format="PPM")
    with pytest.raises(
        InvalidInput, match=r"^image has unsupported format PPM; supported: BMP, GIF, JPEG"
    ) as ei:
        decode_image(buf.getvalue())
    assert ei.value.details == {"reason": "unsupported_format", "format": "PPM"}


def test_format_allow_list_can_be_narrowed() -> None:
    data = _png(Image.fromarray(_gradient()))
    with pytest.raises(InvalidInput, match="unsupported format PNG; supported: JPEG"):
        decode_image(data, formats=frozenset({"JPEG"}))


def test_decompression_bomb_our_limit() -> None:
    data = _png_header_only(20_000, 20_000)  # 400 M pixels claimed, a few bytes of data
    with pytest.raises(
        InvalidInput,
        match=r"^image is a decompression bomb: (20000x20000 = )?400000000 pixels exceeds "
        r"the limit of 50000000 pixels$",
    ) as ei:
        decode_image(data)
    assert ei.value.details["reason"] == "decompression_bomb"


def test_decompression_bomb_small_configured_limit() -> None:
    data = _png(Image.fromarray(_gradient(100, 100)))
    with pytest.raises(InvalidInput, match="100x100 = 10000 pixels exceeds the limit of 5000 pixels"):
        decode_image(data, max_pixels=5000)
    assert decode_image(data, max_pixels=10_000).size == (100, 100)


def test_decompression_bomb_pillow_error_is_reported(monkeypatch) -> None:
    # beyond 2x Pillow's MAX_IMAGE_PIXELS Pillow raises on open: still our InvalidInput
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    data = _png(Image.fromarray(_gradient(100, 100)))
    with pytest.raises(InvalidInput, match="decompression bomb"):
        decode_image(data)


def test_zero_size() -> None:
    data = _png_header_only(0, 10)
    with pytest.raises(InvalidInput, match=r"^image has zero size \(0x10 pixels\)$") as ei:
        decode_image(data)
    assert ei.value.details["reason"] == "zero_size"


def test_decompression_bomb_between_our_limit_and_pillows() -> None:
    data = _png_header_only(10_000, 6_000)  # 60 M: under Pillow's limits, over ours
    with pytest.raises(
        InvalidInput,
        match=r"^image is a decompression bomb: 10000x6000 = 60000000 pixels exceeds "
        r"the limit of 50000000 pixels$",
    ):
        decode_image(data)


def test_zero_size_gif() -> None:
    # GIF logical screen 0x0 with no image: Pillow opens it as a 0-size image
    gif = b"GIF89a" + struct.pack("<HH", 0, 0) + b"\x00\x00\x00" + b";"
    with pytest.raises(InvalidInput, match=r"^image has zero size \(0x0 pixels\)$"):
        decode_image(gif)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(InvalidInput, match="cannot read image file .*nope.png"):
        load_image(tmp_path / "nope.png")


# ------------------------------------------------------------------------------------------ good inputs


def test_rgb_roundtrip_png() -> None:
    arr = _gradient()
    out = decode_image(encode_png(arr))
    assert isinstance(out, DecodedImage)
    assert out.pixels.dtype == np.uint8 and out.pixels.shape == (48, 64, 3)
    assert np.array_equal(out.pixels, arr)
    assert out.format == "PNG" and out.original_size == (64, 48) and out.original_mode == "RGB"


@pytest.mark.parametrize(
    "orientation,expected_size", [(1, (64, 48)), (3, (64, 48)), (6, (48, 64)), (8, (48, 64))]
)
def test_exif_orientation(orientation: int, expected_size: tuple[int, int]) -> None:
    arr = np.zeros((48, 64, 3), np.uint8)
    arr[:8, :8] = (255, 0, 0)  # red mark in the stored top-left corner
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = decode_image(_jpeg(img, quality=95, exif=exif.tobytes()))
    assert out.size == expected_size and out.original_size == (64, 48)
    assert out.exif_orientation == orientation
    red = out.pixels[..., 0].astype(int) - out.pixels[..., 1]
    y, x = np.unravel_index(np.argmax(red), red.shape)
    h, w = out.height, out.width
    # where the stored top-left corner ends up after honouring the tag
    corner = {1: (0, 0), 3: (h - 1, w - 1), 6: (0, w - 1), 8: (h - 1, 0)}[orientation]
    assert abs(y - corner[0]) < 8 and abs(x - corner[1]) < 8


def test_rgba_composited_on_white_or_alpha_dropped() -> None:
    rgba = np.zeros((10, 10, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :5, 3] = 255  # left half opaque red, right half fully transparent
    data = _png(Image.fromarray(rgba, "RGBA"))
    white = decode_image(data)
    assert white.had_alpha and white.original_mode == "RGBA"
    assert tuple(white.pixels[0, 0]) == (200, 0, 0) and tuple(white.pixels[0, 9]) == (255, 255, 255)
    dropped = decode_image(data, alpha="drop")
    assert tuple(dropped.pixels[0, 9]) == (200, 0, 0)


def test_palette_with_transparency() -> None:
    img = Image.fromarray(_gradient()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    img.info["transparency"] = 0
    out = decode_image(_png(img, transparency=0))
    assert out.pixels.shape == (48, 64, 3) and out.original_mode == "P"


def test_grayscale() -> None:
    g = np.tile(np.arange(64, dtype=np.uint8)[None, :] * 4, (32, 1))
    out = decode_image(_png(Image.fromarray(g, "L")))
    assert out.pixels.shape == (32, 64, 3) and out.original_mode == "L"
    assert np.array_equal(out.pixels[..., 0], g) and np.array_equal(out.pixels[..., 2], g)


def test_16bit_grayscale() -> None:
    g16 = (np.tile(np.arange(64, dtype=np.uint32)[None, :], (16, 1)) * 1024).astype(np.uint16)
    img = Image.fromarray(g16)
    out = decode_image(_png(img))
    assert out.pixels.dtype == np.uint8 and out.pixels.shape == (16, 64, 3)
    assert np.array_equal(out.pixels[..., 1], (g16 >> 8).astype(np.uint8))


def test_16bit_tiff() -> None:
    g16 = np.full((8, 8), 65535, np.uint16)
    buf = io.BytesIO()
    Image.fromarray(g16).save(buf, format="TIFF")
    out = decode_image(buf.getvalue())
    assert out.format == "TIFF" and int(out.pixels.max()) == 255


def test_cmyk_jpeg() -> None:
    img = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    out = decode_image(_jpeg(img))
    r, g, b = out.pixels[8, 8].astype(int)
    assert r > 200 and g < 60 and b < 60


def test_encoders_write_no_exif() -> None:
    arr = _gradient()
    for data in (encode_png(arr), encode_jpeg(arr, quality=80)):
        img = Image.open(io.BytesIO(data))
        assert len(img.getexif()) == 0
        assert "exif" not in img.info and "icc_profile" not in img.info
    assert decode_image(encode_jpeg(arr)).format == "JPEG"


# ------------------------------------------------------------------------------------------ fuzzing

_VALID = {
    "png": encode_png(_gradient(40, 30)),
    "jpeg": encode_jpeg(_gradient(40, 30), quality=80),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(sorted(_VALID)),
    cut=st.integers(0, 2000),
    flips=st.lists(st.integers(0, 2000), max_size=6),
)
def test_fuzzed_images_decode_or_raise_invalid_input(kind: str, cut: int, flips: list[int]) -> None:
    """Truncated or bit-flipped images either decode to a valid array or raise InvalidInput, nothing else."""
    data = bytearray(_VALID[kind][: max(0, len(_VALID[kind]) - cut)])
    for pos in flips:
        if data:
            data[pos % len(data)] ^= 0x5A
    try:
        out = decode_image(bytes(data))
    except InvalidInput as exc:
        assert exc.message
    else:
        assert out.pixels.dtype == np.uint8 and out.pixels.ndim == 3 and out.pixels.shape[2] == 3


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_crash(data: bytes) -> None:
    try:
        decode_image(data)
    except InvalidInput:
        pass


def test_truncated_images_are_refused_even_when_pillow_is_told_to_accept_them(monkeypatch) -> None:
    """face_recognition switches Pillow's process-wide LOAD_TRUNCATED_IMAGES on; our decoder must not follow."""
    import io

    import numpy as np
    from PIL import Image, ImageFile

    from idlock.errors import InvalidInput
    from idlock.images import decode_image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(InvalidInput, match="truncated"):
        decode_image(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored for whoever set it
