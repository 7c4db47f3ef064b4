"""Pipeline bench: generation jobs through the REST gateway on the local mesh (NATS, every service as its own
process, SQLite, Qdrant local mode, the offline compositor).

For each job: end-to-end = from the gateway accepting the submission (job created_at) to the job's terminal update
(updated_at), both stamped by the orchestrator's clock, so the client's waiting does not inflate it (clients follow
the job's server-sent events, as `idlock demo` does). Model and provider time = the job's `step_model_seconds`: the
render, regenerate, score and refine steps whole (renderer, face models, refiner), and inside the memory steps the time its
text embedder (and LLM, when one is set) took, as the memory service reports it. Orchestration overhead =
end-to-end - model and provider time: queueing on NATS, the database, gRPC hops, the memory service's queries and
vector search, the orchestrator's claim, checkpoints and events. `orchestration_only` also leaves out every step's
own time: what the orchestrator adds between and around the steps, split into `queue_and_end` (from the
submission to the worker's claim, plus writing the job's end) and `between_steps` (from the claim to the job's
metrics, outside every step). `overhead_with_memory_models` counts the text embedder as overhead too (the
stricter reading). `step_outside_models` is each step's time less the model time in
it (for context and record: the memory service's own work and the hop to it). `cpu_ms_per_job` is the CPU each
component's processes (with their children) used per job over the measured jobs, the input of the capacity model
in docs/SCALING.md. Jobs are kept `--in-flight` at a time (the orchestrator's
concurrency), so the figures are not a queue-length measurement; jobs/s is the throughput at that level.

    .venv/bin/python bench/pipeline.py [--jobs 200] [--in-flight 2] [--near-copy regenerate|flag]

The offline compositor pastes the reference's face, so every output is a near-copy: with the default
`--near-copy regenerate` (the orchestrator's default) every job renders and scores twice. `--near-copy flag` runs
the path of a job whose output is not a copy (one render, one score), the usual one with a real model.

Last line: RESULT {"jobs", "succeeded", "jobs_per_s", "e2e_p50_ms", "e2e_p95_ms", "overhead_p50_ms",
"overhead_p95_ms", "orchestration_only_p50_ms", "orchestration_only_p95_ms", "model_p50_ms", "cpu_ms_per_job", ...}
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx
from PIL import Image
from skimage import data as skdata

from idlock.demo import wait_for_job
from idlock.mesh import LocalMesh

DEBUG = "--debug" in sys.argv
PROMPTS = [
    "Arya fights a dragon on a cliff at sunset, wearing battle armour and holding a sword",
    "Arya rests at a forest camp at night with a fresh cut on her left cheek",
    "Arya takes off the armour and walks into a tavern",
    "Arya rides through the snow in a fur cloak",
]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU time (user + system) so far of each component's process and its children (the identity service's model
    workers), from /proc; empty where there is no /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds: dict[int, float] = {}
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        seconds[pid] = (int(fields[11]) + int(fields[12])) / tick
        children.setdefault(int(fields[1]), []).append(pid)

    def tree(pid: int) -> float:
        return seconds.get(pid, 0.0) + sum(tree(c) for c in children.get(pid, ()))

    return {name: tree(pid) for name, pid in pids.items()}


def run(jobs: int, in_flight: int, warmup: int, near_copy: str = "regenerate") -> dict:
    buf = io.BytesIO()
    Image.fromarray(skdata.astronaut()).save(buf, format="PNG")
    env = {
        "IDLOCK_RENDER_PROVIDERS": '["compositor"]',
        "IDLOCK_ORCHESTRATOR_CONCURRENCY": str(in_flight),
        "IDLOCK_GATEWAY_GENERATE_RATE_LIMIT_PER_MINUTE": "100000",
        "IDLOCK_GATEWAY_GENERATE_RATE_LIMIT_BURST": "100000",
        "IDLOCK_GATEWAY_RATE_LIMIT_PER_MINUTE": "100000",
        "IDLOCK_GATEWAY_RATE_LIMIT_BURST": "100000",
        "IDLOCK_ORCHESTRATOR_MAX_ACTIVE_JOBS_PER_OWNER": "1000",
        "IDLOCK_LOG_LEVEL": "WARNING",
        "IDLOCK_ORCHESTRATOR_NEAR_COPY": near_copy,
    }
    tmp = tempfile.mkdtemp(prefix="idlock-bench-")
    with LocalMesh(Path(tmp), free_ports=True, nats_port=0, extra_env=env) as mesh:
        base = mesh.components["gateway"].address
        with httpx.Client(base_url=base, timeout=120) as client:
            creds = {"email": "bench@idlock.local", "password": "pipeline run 42 of many"}
            client.post("/auth/register", json=creds).raise_for_status()
            token = client.post("/auth/login", json=creds).json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            created = client.post(
                "/api/v1/characters",
                data={"name": "Arya", "description": "bench", "consent": "true"},
                files=[("image", ("ref.png", buf.getvalue(), "image/png"))],
            )
            created.raise_for_status()
            character_id = created.json()["character_id"]

        def one(i: int) -> dict:
            with httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {token}"}) as c:
                accepted = c.post(
                    "/api/v1/generate",
                    json={"character_id": character_id, "prompt": PROMPTS[i % len(PROMPTS)]},
                )
                if accepted.status_code != 202:
                    raise RuntimeError(f"submission {i} refused: HTTP {accepted.status_code} {accepted.text}")
                return wait_for_job(c, accepted.json()["job_id"], 120, f"job {i}")

        with ThreadPoolExecutor(max_workers=in_flight) as pool:
            list(pool.map(one, range(warmup)))  # lazy model loads and first connections, not measured
            pids = {name: c.pid for name, c in mesh.components.items() if c.pid}
            cpu_before = cpu_seconds(pids)
            started = time.perf_counter()
            results = list(pool.map(one, range(jobs)))
            wall = time.perf_counter() - started
            cpu_after = cpu_seconds(pids)

    done = [j for j in results if j["status"] == "succeeded"]
    e2e, model, overhead, between, strict, queued, in_run = [], [], [], [], [], [], []
    steps: dict[str, list[float]] = {}
    outside_models: dict[str, list[float]] = {}  # per step: its time less the model time inside it
    for job in done:
        total = ts(job["updated_at"]) - ts(job["created_at"])
        step = job["metrics"].get("step_seconds", {})
        in_step_models = job["metrics"].get("step_model_seconds", {})
        if DEBUG:  # end-to-end ms, attempts, then per step: ms (of which in models)
            per_step = {
                k: f"{v * 1000:.0f} ({in_step_models.get(k, 0.0) * 1000:.0f})" for k, v in step.items()
            }
            print(round(total * 1000), job["attempts"], per_step)
        for name, seconds in step.items():
            steps.setdefault(name, []).append(seconds)
            outside_models.setdefault(name, []).append(seconds - in_step_models.get(name, 0.0))
        in_models = sum(in_step_models.values())
        in_model_services = sum(
            in_step_models.get(k, 0.0) for k in ("render", "regenerate", "score", "refine")
        )
        running = job["metrics"].get("total_seconds", 0.0)  # from the claim to the job's metrics
        e2e.append(total)
        model.append(in_models)
        overhead.append(total - in_models)
        strict.append(total - in_model_services)
        between.append(total - sum(step.values()))
        queued.append(total - running)
        in_run.append(running - sum(step.values()))
    ms = lambda v: round(v * 1000, 1)
    return {
        "jobs": jobs,
        "succeeded": len(done),
        "in_flight": in_flight,
        "warmup": warmup,
        "near_copy": near_copy,
        "jobs_per_s": round(len(done) / wall, 3),
        "e2e_p50_ms": ms(statistics.median(e2e)),
        "e2e_p95_ms": ms(pct(e2e, 95)),
        "overhead_p50_ms": ms(statistics.median(overhead)),
        "overhead_p95_ms": ms(pct(overhead, 95)),
        "overhead_with_memory_models_p95_ms": ms(pct(strict, 95)),
        "orchestration_only_p50_ms": ms(statistics.median(between)),
        "orchestration_only_p95_ms": ms(pct(between, 95)),
        "queue_and_end_p50_ms": ms(statistics.median(queued)),
        "queue_and_end_p95_ms": ms(pct(queued, 95)),
        "between_steps_p50_ms": ms(statistics.median(in_run)),
        "between_steps_p95_ms": ms(pct(in_run, 95)),
        "model_p50_ms": ms(statistics.median(model)),
        # what each component's processes spent of the CPU per job (the capacity model's input)
        "cpu_ms_per_job": {k: ms((cpu_after[k] - cpu_before[k]) / jobs) for k in sorted(cpu_after)},
        "step_p50_ms": {k: ms(statistics.median(v)) for k, v in sorted(steps.items())},
        "step_p95_ms": {k: ms(pct(v, 95)) for k, v in sorted(steps.items())},
        "step_outside_models_p50_ms": {
            k: ms(statistics.median(v)) for k, v in sorted(outside_models.items())
        },
        "step_outside_models_p95_ms": {k: ms(pct(v, 95)) for k, v in sorted(outside_models.items())},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--in-flight", type=int, default=2)
    ap.add_argument("--debug", action="store_true", help="print each job's timings")
    ap.add_argument("--warmup", type=int, default=4, help="jobs run first and left out of the figures")
    ap.add_argument(
        "--near-copy",
        choices=["regenerate", "flag"],
        default="regenerate",
        help="the orchestrator's answer to a near-copy (every compositor output is one)",
    )
    args = ap.parse_args()
    result = run(args.jobs, args.in_flight, args.warmup, args.near_copy)
    print(
        f"{result['succeeded']}/{result['jobs']} jobs, {result['jobs_per_s']} jobs/s; end-to-end p50 "
        f"{result['e2e_p50_ms']} ms p95 {result['e2e_p95_ms']} ms; orchestration overhead p50 "
        f"{result['overhead_p50_ms']} ms p95 {result['overhead_p95_ms']} ms (outside every step: p50 "
        f"{result['orchestration_only_p50_ms']} ms p95 {result['orchestration_only_p95_ms']} ms); "
        f"steps p95 {result['step_p95_ms']}; CPU ms a job {result['cpu_ms_per_job']}"
    )
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
