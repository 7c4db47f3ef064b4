import io

import numpy as np
from PIL import Image

from idlock.provenance import DIGITAL_SOURCE_TYPE, mark_video, read_image_mark, read_video_mark
from services.render.video import probe_video, stamp_video, write_video
from services.render.watermark import apply_watermark, draw_mark


def _png(size=(256, 256), colour=(0, 120, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def test_visible_mark_and_chunk():
    src = _png()
    out = apply_watermark(src, job_id="job-42", provider="compositor", label="offline/compositor")
    meta = read_image_mark(out)
    assert meta == {
        "generator": "IDLock",
        "ai_generated": True,
        "digital_source_type": DIGITAL_SOURCE_TYPE,
        "job_id": "job-42",
        "provider": "compositor",
        "label": "offline/compositor",
        "xmp_digital_source_type": DIGITAL_SOURCE_TYPE,
    }
    a = np.asarray(Image.open(io.BytesIO(src)).convert("RGB")).astype(int)
    b = np.asarray(Image.open(io.BytesIO(out)).convert("RGB")).astype(int)
    diff = np.abs(a - b).sum(axis=2) > 0
    ys, xs = np.nonzero(diff)
    assert len(ys) > 0
    assert ys.min() > 256 * 0.7 and xs.min() > 256 * 0.5  # only the bottom-right corner changed


def test_metadata_only_and_absent():
    src = _png((48, 48))
    assert read_image_mark(src) is None
    out = apply_watermark(src, job_id="j", visible=False)
    assert read_image_mark(out)["job_id"] == "j"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(src))), np.asarray(Image.open(io.BytesIO(out))))
    # marking again replaces the mark (one IDLock chunk, the newest), and the pixel data is carried over as it was
    again = apply_watermark(out, job_id="k", visible=False)
    assert read_image_mark(again)["job_id"] == "k" and again.count(b"IDLock\0{") == 1
    assert src[src.index(b"IDAT") - 4 : src.index(b"IEND") - 4] in again


def test_other_text_chunks_are_kept():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "seed=1")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "PNG", pnginfo=info)
    out = apply_watermark(buf.getvalue(), job_id="j")
    with Image.open(io.BytesIO(out)) as im:
        assert im.text["parameters"] == "seed=1" and im.text["Software"] == "IDLock"


def _clip() -> bytes:
    frames = [np.full((96, 128, 3), (20 * i, 90, 160), np.uint8) for i in range(8)]
    return write_video(frames, 8.0)


def test_a_clip_carries_the_manifest_and_still_plays():
    clip = _clip()
    assert read_video_mark(clip) is None
    marked = mark_video(clip, "video/webm", job_id="v-1", provider="compositor", label="offline/compositor")
    mark = read_video_mark(marked)
    assert (
        mark["ai_generated"]
        and mark["job_id"] == "v-1"
        and mark["digital_source_type"] == DIGITAL_SOURCE_TYPE
    )
    info = probe_video(marked)  # the Void element at the end is skipped by the reader
    assert info.frames == 8 and (info.width, info.height) == (128, 96)
    mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00\x00\x00\x08free"
    boxed = mark_video(mp4, "video/mp4", job_id="v-2")
    assert boxed.startswith(mp4) and boxed[len(mp4) + 4 : len(mp4) + 8] == b"uuid"
    assert int.from_bytes(boxed[len(mp4) : len(mp4) + 4], "big") == len(boxed) - len(mp4)
    assert read_video_mark(boxed)["job_id"] == "v-2"


def test_stamped_frames_show_the_visible_mark():
    clip = _clip()
    stamped = stamp_video(clip, draw_mark)
    before, after = probe_video(clip), probe_video(stamped)
    assert after.frames == before.frames
    diff = np.abs(after.last.astype(int) - before.last.astype(int)).sum(axis=2) > 60
    ys, xs = np.nonzero(diff)
    assert len(ys) > 0 and ys.min() > 96 * 0.6 and xs.min() > 128 * 0.4  # the corner, not the picture
