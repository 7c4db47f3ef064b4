"""Render bench: compositor throughput, and the render path's per-call overhead over calling google-genai directly.

Both paths talk to the same local fake Gemini server in the same run, calls interleaved (direct, service, direct,
...) so that machine noise hits both alike. For now the "service" path is the in-process provider chain
(`Renderer.render`); the lead extends it to go through the gRPC service.

    .venv/bin/python bench/render.py [--calls 200] [--compositor-s 3]

Last line: RESULT {"overhead_ratio", "direct_ms_p50", "service_ms_p50", "compositor_images_per_s", ...}
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

from services.render.engine import Renderer
from services.render.models import RenderRequest
from services.render.providers.compositor import CompositorProvider
from services.render.settings import RenderSettings
from tests.fakes.gemini_server import FakeGeminiServer


def _p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


async def overhead(calls: int, watermark: bool) -> dict:
    from google import genai
    from google.genai import types

    with FakeGeminiServer() as fake:
        buf = io.BytesIO()
        Image.new("RGB", (256, 256), (10, 120, 200)).save(buf, "PNG")
        fake.image = buf.getvalue()
        settings = RenderSettings(
            providers=["gemini"],
            gemini_api_key="bench",
            gemini_base_url=fake.base_url,
            timeout_s=10,
            watermark=watermark,
        )
        renderer = Renderer(settings)
        direct = genai.Client(
            api_key="bench",
            http_options=types.HttpOptions(base_url=fake.base_url, timeout=10_000, api_version="v1beta"),
        )
        config = types.GenerateContentConfig(response_modalities=["IMAGE"], seed=1)

        async def call_direct() -> None:
            r = await direct.aio.models.generate_content(
                model=settings.gemini_model, contents="a castle", config=config
            )
            assert r.candidates[0].content.parts[0].inline_data.data

        async def call_service() -> None:
            r = await renderer.render(RenderRequest(prompt="a castle", seed=1, job_id="bench"))
            assert r.image

        for _ in range(20):  # warm-up: connections, imports, lazy clients
            await call_direct()
            await call_service()
        d, s = [], []
        for _ in range(calls):
            t = time.perf_counter()
            await call_direct()
            d.append(time.perf_counter() - t)
            t = time.perf_counter()
            await call_service()
            s.append(time.perf_counter() - t)
        await renderer.aclose()
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
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--compositor-s", type=float, default=3.0)
    args = ap.parse_args()
    plain = asyncio.run(overhead(args.calls, watermark=False))
    marked = asyncio.run(overhead(args.calls, watermark=True))
    rate = compositor_rate(args.compositor_s)
    result = {
        "overhead_ratio": round(plain["service_ms_p50"] / plain["direct_ms_p50"], 3),
        "direct_ms_p50": round(plain["direct_ms_p50"], 3),
        "service_ms_p50": round(plain["service_ms_p50"], 3),
        "compositor_images_per_s": round(rate, 2),
        "watermark_overhead_ratio": round(marked["service_ms_p50"] / marked["direct_ms_p50"], 3),
        "service_watermarked_ms_p50": round(marked["service_ms_p50"], 3),
        "calls": args.calls,
        "image_px": 256,
        "compositor_px": 768,
    }
    print(
        f"direct google-genai p50 {result['direct_ms_p50']:.2f} ms, render chain p50 "
        f"{result['service_ms_p50']:.2f} ms (ratio {result['overhead_ratio']}); with watermark "
        f"{result['service_watermarked_ms_p50']:.2f} ms; compositor {result['compositor_images_per_s']} img/s"
    )
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
