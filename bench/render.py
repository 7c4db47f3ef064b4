"""Render bench: compositor throughput, and `RenderImage` through the gRPC service against calling google-genai
directly.

Both paths talk to the same local fake Gemini server in the same run, calls interleaved (direct, service, direct,
...) so that machine noise hits both alike. The service path is the real render service on a local port (its own
`build()`), reached through an IDLock client channel: proto decoding, the provider chain, storing the PNG in object
storage and the reply. The fake answers after `--model-latency-ms` (standing in for the model's generation time,
which real Gemini image calls spend in seconds); the zero-latency run shows the fixed overhead in milliseconds.

    .venv/bin/python bench/render.py [--calls 100] [--model-latency-ms 200] [--compositor-s 3]

Last line: RESULT {"overhead_ratio", "overhead_ms_p50", "direct_ms_p50", "service_ms_p50", "model_latency_ms",
"overhead_ratio_zero_latency", "compositor_images_per_s", ...}
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from PIL import Image

from services.render.models import RenderRequest
from services.render.providers.compositor import CompositorProvider
from tests.fakes.gemini_server import FakeGeminiServer
from tests.harness import running_service


def _p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


async def overhead(calls: int, latency_ms: float, data_dir: Path) -> dict:
    from google import genai
    from google.genai import types

    from idlock.v1 import render_service_pb2 as pb
    from idlock.v1 import render_service_pb2_grpc as pb_grpc

    with FakeGeminiServer() as fake:
        buf = io.BytesIO()
        Image.new("RGB", (256, 256), (10, 120, 200)).save(buf, "PNG")
        fake.image = buf.getvalue()
        env = {
            "IDLOCK_RENDER_PROVIDERS": '["gemini"]',
            "IDLOCK_RENDER_GEMINI_API_KEY": "bench",
            "IDLOCK_RENDER_GEMINI_BASE_URL": fake.base_url,
            "IDLOCK_RENDER_TIMEOUT_S": "10",
            "IDLOCK_RENDER_WATERMARK": "false",
            "IDLOCK_LOG_LEVEL": "WARNING",
        }
        async with running_service("render", data_dir, **env) as channel:
            stub = pb_grpc.RenderServiceStub(channel)
            direct = genai.Client(
                api_key="bench",
                http_options=types.HttpOptions(base_url=fake.base_url, timeout=10_000, api_version="v1beta"),
            )
            config = types.GenerateContentConfig(response_modalities=["IMAGE"], seed=1)
            model = (await stub.ListProviders(pb.ListProvidersRequest())).providers[0].model

            async def call_direct() -> None:
                r = await direct.aio.models.generate_content(model=model, contents="a castle", config=config)
                assert r.candidates[0].content.parts[0].inline_data.data

            async def call_service(i: int) -> None:
                r = await stub.RenderImage(
                    pb.RenderImageRequest(prompt="a castle", seed=1, job_id=f"bench-{i}")
                )
                assert r.image.uri and r.provenance.provider == "gemini"

            for i in range(10):  # warm-up: connections, imports, lazy clients
                await call_direct()
                await call_service(i)
            fake.latency_s = latency_ms / 1000
            d, s = [], []
            for i in range(calls):
                t = time.perf_counter()
                await call_direct()
                d.append(time.perf_counter() - t)
                t = time.perf_counter()
                await call_service(i)
                s.append(time.perf_counter() - t)
            await direct.aio.aclose()
    return {"direct_ms_p50": _p50(d), "service_ms_p50": _p50(s)}


def compositor_rate(seconds: float) -> float:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "PNG")
    ref = buf.getvalue()
    comp = CompositorProvider()
    comp.render_sync(RenderRequest(prompt="warm-up", references=[ref], seed=0))  # caches the face crop
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        comp.render_sync(
            RenderRequest(
                prompt="a knight on a cliff at sunset with a dragon",
                references=[ref],
                seed=n,
                width=768,
                height=768,
            )
        )
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--model-latency-ms", type=float, default=200.0)
    ap.add_argument("--compositor-s", type=float, default=3.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        zero = asyncio.run(overhead(args.calls, 0.0, Path(tmp) / "a"))
        plain = asyncio.run(overhead(args.calls, args.model_latency_ms, Path(tmp) / "b"))
    rate = compositor_rate(args.compositor_s)
    result = {
        "overhead_ratio": round(plain["service_ms_p50"] / plain["direct_ms_p50"], 3),
        "overhead_ms_p50": round(zero["service_ms_p50"] - zero["direct_ms_p50"], 3),
        "direct_ms_p50": round(plain["direct_ms_p50"], 3),
        "service_ms_p50": round(plain["service_ms_p50"], 3),
        "model_latency_ms": args.model_latency_ms,
        "overhead_ratio_zero_latency": round(zero["service_ms_p50"] / zero["direct_ms_p50"], 3),
        "compositor_images_per_s": round(rate, 2),
        "calls": args.calls,
        "image_px": 256,
        "compositor_px": 768,
    }
    print(
        f"with the model answering in {args.model_latency_ms:.0f} ms: direct google-genai p50 "
        f"{result['direct_ms_p50']:.2f} ms, RenderImage via gRPC p50 {result['service_ms_p50']:.2f} ms "
        f"(ratio {result['overhead_ratio']}); fixed overhead {result['overhead_ms_p50']:.2f} ms "
        f"(zero-latency ratio {result['overhead_ratio_zero_latency']}); "
        f"compositor {result['compositor_images_per_s']} img/s"
    )
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
