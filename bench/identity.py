"""Identity encode throughput: our dlib path against the PyPI `face_recognition` package (same dlib models).

    .venv/bin/python bench/identity.py [--images DIR] [--limit N] [--repeat R]
    .venv/bin/python bench/identity.py --gpu [--model-dir DIR]     # arcface recognition, batch sizes 1..64
    .venv/bin/python bench/identity.py --service [--repeat 1]     # the service: loop stall, faces/s at 1/2/4 callers

CPU mode: both sides get the same decoded RGB arrays (decoding is not timed for either), one warm-up image each,
then every image is encoded R times; faces/s = faces encoded / seconds. First in one process, then (`--procs`, one
per CPU by default) with each side on a pool of single-threaded processes, as the identity service runs its models:
`*_all_cores`. Ours = `IdentityEngine.detect_faces(...,
embed=True)` (detect on a copy downscaled to max_side with adaptive upsampling, 5-point landmarks, one batched
descriptor call per image, plus blur/pose). Peer = `face_recognition.face_encodings(image)` (its defaults: HOG
upsampled once on the full image, 5-point model, num_jitters=1).
Images: the real photos in IDLOCK_FACES_DIR (default ../shared/faces) when present, else scikit-image's astronaut
and the sample images shipped in the insightface wheel.

GPU mode: recognition only (aligned 112x112 crops) through insightface's ArcFaceONNX on onnxruntime (CUDA when
present). With --model-dir it uses the real w600k_r50.onnx; without, a synthetic network with the same input/output
signature and IResNet-50-like depth and width (random weights; throughput only, no meaning in the embeddings).

The last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "libs"))

from idlock.images import load_image


def bench_images(images_dir: Path | None, limit: int) -> tuple[list[np.ndarray], str]:
    d = images_dir or Path(os.environ.get("IDLOCK_FACES_DIR", ROOT.parent / "shared" / "faces"))
    paths = (
        sorted(p for p in d.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")) if d.is_dir() else []
    )
    if paths:
        # spread the pick over the folder so that sizes and identities vary
        step = max(1, len(paths) // limit)
        return [load_image(p).pixels for p in paths[::step][:limit]], f"{d} ({min(limit, len(paths))} images)"
    from skimage.data import astronaut

    imgs = [astronaut()]
    try:
        import importlib.util

        spec = importlib.util.find_spec("insightface")
        data = Path(next(iter(spec.submodule_search_locations))) / "data" / "images"
        imgs += [load_image(p).pixels for p in sorted(data.glob("*.jpg"))]
    except Exception as exc:  # noqa: BLE001 - the extra samples are optional
        print(f"insightface sample images not used: {exc}", file=sys.stderr)
    return imgs[:limit], "astronaut + insightface sample images"


def timed(fn, images: list[np.ndarray], repeat: int) -> tuple[int, float]:
    fn(images[0])  # warm-up
    faces = 0
    t0 = time.perf_counter()
    for _ in range(repeat):
        for img in images:
            faces += fn(img)
    return faces, time.perf_counter() - t0


_POOL_IMAGES: list[np.ndarray] = []
_POOL_FN = None


def _pool_start(side: str, images_dir: Path | None, limit: int, max_side: int) -> None:
    """A pool worker: its own copy of the images (decoded here, not timed) and of `side`'s models."""
    global _POOL_FN
    from idlock.threads import limit_cpu_threads

    limit_cpu_threads(1)
    _POOL_IMAGES.extend(_cpu_images(images_dir, limit, max_side)[0])
    _POOL_FN = _side(side)
    _POOL_FN(_POOL_IMAGES[0])  # warm-up


def _pool_encode(i: int) -> int:
    assert _POOL_FN is not None
    return _POOL_FN(_POOL_IMAGES[i])


def _side(side: str):
    if side == "ours":
        from idlock.faces.engine import IdentityEngine
        from services.identity.settings import IdentitySettings

        engine = IdentityEngine(IdentitySettings(encoder="dlib"))
        return lambda im: len(engine.detect_faces(im, embed=True))
    import face_recognition

    return lambda im: len(face_recognition.face_encodings(im))


def _cpu_images(images_dir: Path | None, limit: int, max_side: int) -> tuple[list[np.ndarray], str]:
    images, source = bench_images(images_dir, limit)
    if max_side:
        # give both sides images already at most this size (e.g. 1024: what generators produce), so the figure
        # shows the per-face gain without the peer's cost of scanning huge photos
        from idlock.faces.encoders import _downscale

        images = [_downscale(im, max_side)[0] for im in images]
        source += f", pre-downscaled to <= {max_side} px"
    return images, source


def pooled(side: str, args, n_images: int, procs: int) -> tuple[int, float]:
    """Every image `repeat` times over `procs` worker processes (one core each), as the identity service runs
    its models; seconds from the first task to the last answer."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    init = (side, args.images, args.limit, args.max_side)
    with ProcessPoolExecutor(procs, mp_context=ctx, initializer=_pool_start, initargs=init) as pool:
        list(pool.map(_pool_encode, [0] * procs))  # every worker up and warm
        t0 = time.perf_counter()
        faces = sum(pool.map(_pool_encode, [i for _ in range(args.repeat) for i in range(n_images)]))
        return faces, time.perf_counter() - t0


def cpu(args) -> dict:
    images, source = _cpu_images(args.images, args.limit, args.max_side)
    sizes = [f"{i.shape[1]}x{i.shape[0]}" for i in images]
    print(f"images: {source}: {', '.join(sizes)}")
    ours_faces, ours_s = timed(_side("ours"), images, args.repeat)
    ours = ours_faces / ours_s
    print(f"ours (idlock dlib), 1 process     {ours_faces:4d} faces in {ours_s:7.2f} s = {ours:7.2f} faces/s")
    peer_faces, peer_s = timed(_side("peer"), images, args.repeat)
    peer = peer_faces / peer_s
    print(f"peer (face_recognition), 1 proc.  {peer_faces:4d} faces in {peer_s:7.2f} s = {peer:7.2f} faces/s")
    ratio = ours / peer if peer > 0 else float("inf")
    print(f"ratio ours / face_recognition = {ratio:.2f}x")
    result = {
        "mode": "cpu",
        "images": len(images),
        "repeat": args.repeat,
        "ours_faces": ours_faces,
        "peer_faces": peer_faces,
        "ours_faces_per_s": round(ours, 2),
        "peer_faces_per_s": round(peer, 2),
        "ratio": round(ratio, 2),
    }
    procs = args.procs or os.cpu_count() or 1
    if procs > 1:
        # both sides on every core, one process each: what a replica of the identity service does with its CPUs
        ours_n, ours_t = pooled("ours", args, len(images), procs)
        peer_n, peer_t = pooled("peer", args, len(images), procs)
        result.update(
            procs=procs,
            ours_faces_per_s_all_cores=round(ours_n / ours_t, 2),
            peer_faces_per_s_all_cores=round(peer_n / peer_t, 2),
            ratio_all_cores=round((ours_n / ours_t) / (peer_n / peer_t), 2) if peer_n else None,
        )
        print(
            f"{procs} processes: ours {result['ours_faces_per_s_all_cores']} faces/s, face_recognition "
            f"{result['peer_faces_per_s_all_cores']} faces/s, ratio {result['ratio_all_cores']}x"
        )
    return result


def gpu(args) -> dict:
    import tempfile

    import onnxruntime as ort

    from idlock.faces.encoders import ArcFaceEncoder, onnx_providers
    from services.identity.settings import IdentitySettings
    from services.identity.synthetic_models import write_recognition_model

    tmp = None
    model_dir = args.model_dir
    if model_dir is None:
        tmp = tempfile.TemporaryDirectory()
        model_dir = Path(tmp.name)
        write_recognition_model(model_dir / "w600k_r50.onnx", full_size=True)
        print("model: synthetic IResNet-50-like network (random weights), w600k_r50 signature")
    enc = ArcFaceEncoder(IdentitySettings(encoder="arcface", model_dir=model_dir))
    print(
        f"providers: {enc.rec.session.get_providers()} (available {ort.get_available_providers()}, "
        f"asked {onnx_providers('auto')})"
    )
    if enc.rec.session.get_providers()[0] != "CUDAExecutionProvider":
        print("WARNING: onnxruntime is not running on CUDA here: the figures below are CPU figures")
    rng = np.random.default_rng(0)
    results = {}
    for bs in (int(b) for b in args.batches.split(",")):
        crops = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(bs)]
        enc.embed_aligned(crops)  # warm-up (CUDA kernels, memory arena)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            enc.embed_aligned(crops)
            n += bs
        rate = n / (time.perf_counter() - t0)
        results[str(bs)] = round(rate, 1)
        print(f"batch {bs:3d}: {rate:9.1f} faces/s")
    best = max(results.values())
    if tmp is not None:
        tmp.cleanup()
    return {
        "mode": "gpu",
        "providers": enc.rec.session.get_providers(),
        "faces_per_s_by_batch": results,
        "ours_faces_per_s": best,
        "synthetic_model": args.model_dir is None,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=None, help="folder of face photos")
    ap.add_argument("--limit", type=int, default=12, help="images used")
    ap.add_argument("--repeat", type=int, default=1, help="passes over the images")
    ap.add_argument(
        "--max-side", type=int, default=0, help="cpu mode: pre-downscale the images (0: as they are)"
    )
    ap.add_argument(
        "--procs",
        type=int,
        default=0,
        help="cpu mode: also run both sides on this many processes (0: one per CPU; 1: only the 1-process run)",
    )
    ap.add_argument("--gpu", action="store_true", help="arcface recognition throughput, batch sizes 1..64")
    ap.add_argument(
        "--service",
        action="store_true",
        help="the identity service under load: event-loop stall and faces/s with 1, 2, 4 callers, model work in "
        "worker processes against threads (bench/identity_service.py)",
    )
    ap.add_argument("--workers", type=int, default=2, help="service mode: model workers")
    ap.add_argument("--model-dir", type=Path, default=None, help="folder with buffalo_l's w600k_r50.onnx")
    ap.add_argument(
        "--seconds", type=float, default=3.0, help="seconds per batch size (gpu) or per load level (service)"
    )
    ap.add_argument("--batches", default="1,2,4,8,16,32,64", help="gpu mode: batch sizes, comma separated")
    args = ap.parse_args(argv)
    if args.service:
        from identity_service import service

        images, source = bench_images(args.images, args.limit)
        result = service(args, images, source)
    else:
        result = gpu(args) if args.gpu else cpu(args)
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
