import io

import numpy as np
from PIL import Image

from services.render.watermark import apply_watermark, read_watermark


def _png(size=(256, 256), colour=(0, 120, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def test_visible_mark_and_chunk():
    src = _png()
    out = apply_watermark(src, job_id="job-42", provider="compositor", label="offline/compositor")
    meta = read_watermark(out)
    assert meta == {
        "generator": "IDLock",
        "job_id": "job-42",
        "provider": "compositor",
        "label": "offline/compositor",
    }
    a = np.asarray(Image.open(io.BytesIO(src)).convert("RGB")).astype(int)
    b = np.asarray(Image.open(io.BytesIO(out)).convert("RGB")).astype(int)
    diff = np.abs(a - b).sum(axis=2) > 0
    ys, xs = np.nonzero(diff)
    assert len(ys) > 0
    assert ys.min() > 256 * 0.7 and xs.min() > 256 * 0.5  # only the bottom-right corner changed


def test_metadata_only_and_absent():
    src = _png((48, 48))
    assert read_watermark(src) is None
    out = apply_watermark(src, job_id="j", visible=False)
    assert read_watermark(out)["job_id"] == "j"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(src))), np.asarray(Image.open(io.BytesIO(out))))


def test_other_text_chunks_are_kept():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "seed=1")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "PNG", pnginfo=info)
    out = apply_watermark(buf.getvalue(), job_id="j")
    with Image.open(io.BytesIO(out)) as im:
        assert im.text["parameters"] == "seed=1" and im.text["Software"] == "IDLock"
