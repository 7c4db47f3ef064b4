"""The identity service under load, as a caller sees it (`bench/identity.py --service`): the real service
(`python -m services.identity`, its own process) with its model work in worker processes (`isolation=process`, the
default) and, in the same run, in threads of its own process (`isolation=thread`, the peer).

- stall: while callers keep the service encoding, a prober sends a gRPC health check every 5 ms; each answer's
  latency is how long the service's event loop kept it waiting (a health check does no model work). p50 / p99 / max.
- faces/s with 1, 2 and 4 concurrent callers, each sending every image `--repeat` times (DetectFaces: decode,
  detection, landmarks, pose and blur of every face), from its own place in the list.

The service decodes, detects and embeds exactly as in production; the images are sent inline, so no object store
is timed.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PROBE_EVERY_S = 0.005


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


async def _serving(address: str, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the identity service exited with {proc.returncode}")
            try:
                r = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the identity service did not start serving")
            await asyncio.sleep(0.2)


async def _load(address: str, images: list[bytes], callers: int, passes: int, probe: bool) -> dict:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from idlock import mesh_auth
    from idlock.v1 import common_pb2
    from idlock.v1 import identity_service_pb2 as pb
    from idlock.v1 import identity_service_pb2_grpc as pb_grpc

    key = mesh_auth.resolve_key(mesh_auth.MeshAuthSettings(), tempfile.gettempdir())
    metadata = [(mesh_auth.METADATA_KEY, mesh_auth.MeshAuth("orchestrator", key).token())]
    faces = 0
    stalls: list[float] = []
    stop = asyncio.Event()
    async with grpc.aio.insecure_channel(address) as ch:
        stub = pb_grpc.IdentityServiceStub(ch)
        health = health_pb2_grpc.HealthStub(ch)

        async def caller(k: int) -> None:
            # every caller sends every image `passes` times, starting at its own place in the list: each load
            # level does the same work per caller, whatever the image sizes
            nonlocal faces
            for i in range(k, k + passes * len(images)):
                req = pb.DetectFacesRequest(image=common_pb2.ImageInput(data=images[i % len(images)]))
                faces += len((await stub.DetectFaces(req, metadata=metadata, timeout=120)).faces)

        async def prober() -> None:
            while not stop.is_set():
                t0 = time.perf_counter()
                await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
                stalls.append((time.perf_counter() - t0) * 1000)
                await asyncio.sleep(PROBE_EVERY_S)

        t0 = time.perf_counter()
        probing = asyncio.create_task(prober()) if probe else None
        await asyncio.gather(*(caller(k) for k in range(callers)))
        elapsed = time.perf_counter() - t0
        stop.set()
        if probing is not None:
            await probing
    out = {"faces_per_s": round(faces / elapsed, 2)}
    if probe:
        out |= {
            "stall_p50_ms": round(_pct(stalls, 50), 2),
            "stall_p99_ms": round(_pct(stalls, 99), 2),
            "stall_max_ms": round(max(stalls, default=0.0), 2),
            "probes": len(stalls),
        }
    return out


def run_service(isolation: str, images: list[np.ndarray], passes: int, workers: int) -> dict:
    from idlock.natsd import free_port

    port = free_port()
    data = tempfile.mkdtemp(prefix="bench_identity_")
    env = {
        **os.environ,
        "IDLOCK_DATA_DIR": data,
        "IDLOCK_IDENTITY_PORT": str(port),
        "IDLOCK_IDENTITY_ISOLATION": isolation,
        "IDLOCK_IDENTITY_WORKERS": str(workers),
        "IDLOCK_LOG_LEVEL": "WARNING",
    }
    env.setdefault("IDLOCK_MESH_TOKEN_KEY", "bench-identity-service-key-0123456789abcdef")
    os.environ["IDLOCK_MESH_TOKEN_KEY"] = env["IDLOCK_MESH_TOKEN_KEY"]
    proc = subprocess.Popen([sys.executable, "-m", "services.identity"], cwd=ROOT, env=env)
    address = f"127.0.0.1:{port}"
    encoded = [_jpeg(img) for img in images]
    try:
        asyncio.run(_serving(address, proc))
        asyncio.run(_load(address, encoded[:2], 1, 1, probe=False))  # warm-up
        out: dict = {}
        for callers in (1, 2, 4):
            r = asyncio.run(_load(address, encoded, callers, passes, probe=callers == 2))
            out[f"faces_per_s_{callers}"] = r.pop("faces_per_s")
            out |= r
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def service(args, images: list[np.ndarray], source: str) -> dict:
    sizes = [img.shape[0] * img.shape[1] / 1e6 for img in images]
    print(
        f"images: {source}, {min(sizes):.2f}-{max(sizes):.2f} MP; each caller sends each {args.repeat} time(s)"
    )
    result: dict = {"images": len(images), "workers": args.workers}
    for isolation in ("process", "thread"):
        r = run_service(isolation, images, args.repeat, args.workers)
        print(
            f"{isolation:>7}: faces/s {r['faces_per_s_1']} / {r['faces_per_s_2']} / {r['faces_per_s_4']} with "
            f"1 / 2 / 4 callers; health-check stall while encoding p50 {r['stall_p50_ms']} ms, p99 "
            f"{r['stall_p99_ms']} ms, max {r['stall_max_ms']} ms ({r['probes']} probes)"
        )
        result[isolation] = r
    ours, peer = result["process"], result["thread"]
    result |= {
        "stall_p99_ms": ours["stall_p99_ms"],
        "faces_per_s_1": ours["faces_per_s_1"],
        "faces_per_s_2": ours["faces_per_s_2"],
        "faces_per_s_4": ours["faces_per_s_4"],
        "stall_p99_ratio_vs_thread": round(ours["stall_p99_ms"] / max(peer["stall_p99_ms"], 1e-9), 3),
        "faces_per_s_2_ratio_vs_thread": round(ours["faces_per_s_2"] / max(peer["faces_per_s_2"], 1e-9), 3),
    }
    print(
        f"process vs thread: stall p99 x{result['stall_p99_ratio_vs_thread']}, faces/s with 2 callers "
        f"x{result['faces_per_s_2_ratio_vs_thread']}"
    )
    return result


__all__ = ["service"]
