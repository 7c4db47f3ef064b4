"""Same-run A/B of the pipeline bench: this checkout against an earlier commit, on the same machine, in alternating
rounds (base, head, head, base, ...) so that drift in the machine's speed falls on both alike.

The base commit is checked out into a temporary git worktree and run with its own code first on the path (the
virtual environment's packages are shared); each round runs `bench/pipeline.py --jobs N` of that tree on a fresh
local mesh. Figures are the medians over rounds; ratios are head / base (jobs_per_s above 1 is faster, the
latencies below 1 are faster).

    .venv/bin/python bench/ab_pipeline.py --base HEAD~1 [--head HEAD] [--rounds 3] [--jobs 60]

`--head` runs a commit in a worktree of its own too (default: this checkout as it is, uncommitted changes included).

Last line: RESULT {"base", "head", "rounds", "jobs", then for each of jobs_per_s, e2e_p50_ms, e2e_p95_ms,
overhead_p50_ms, overhead_p95_ms, queue_and_end_p50_ms, queue_and_end_p95_ms: "<figure>_head", "<figure>_base" and
"<figure without _ms>_ratio"}
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = (
    "jobs_per_s",
    "e2e_p50_ms",
    "e2e_p95_ms",
    "overhead_p50_ms",
    "overhead_p95_ms",
    "queue_and_end_p50_ms",
    "queue_and_end_p95_ms",
)


def run_pipeline(tree: Path, jobs: int) -> dict:
    env = dict(os.environ, PYTHONPATH=f"{tree / 'libs'}{os.pathsep}{tree}")
    proc = subprocess.run(
        [sys.executable, str(tree / "bench" / "pipeline.py"), "--jobs", str(jobs)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(
            f"bench/pipeline.py in {tree} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return json.loads(lines[-1].removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--base", required=True, help="the git commit (or ref) to compare this checkout against"
    )
    parser.add_argument("--head", default="", help="a commit to run instead of this checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=60)
    args = parser.parse_args()

    def sha(ref: str) -> str:
        return subprocess.run(
            ["git", "rev-parse", "--verify", ref], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    base_sha = sha(args.base)
    with tempfile.TemporaryDirectory(prefix="idlock-ab-") as tmp:
        trees = {"base": (Path(tmp) / "base", base_sha)}
        if args.head:
            trees["head"] = (Path(tmp) / "head", sha(args.head))
        for tree, commit in trees.values():
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(tree), commit],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
        base_tree = trees["base"][0]
        head_tree = trees["head"][0] if "head" in trees else ROOT
        try:
            runs: dict[str, list[dict]] = {"head": [], "base": []}
            for r in range(args.rounds):
                order = ("base", "head") if r % 2 == 0 else ("head", "base")
                for side in order:
                    result = run_pipeline(base_tree if side == "base" else head_tree, args.jobs)
                    runs[side].append(result)
                    print(
                        f"round {r + 1} {side}: " + ", ".join(f"{k} {result[k]}" for k in FIGURES), flush=True
                    )
        finally:
            for tree, _ in trees.values():
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)

    head_name = trees["head"][1][:12] if "head" in trees else "checkout"
    out: dict[str, object] = {
        "base": base_sha[:12],
        "head": head_name,
        "rounds": args.rounds,
        "jobs": args.jobs,
    }
    for key in FIGURES:
        head = statistics.median(r[key] for r in runs["head"])
        base = statistics.median(r[key] for r in runs["base"])
        name = key.removesuffix("_ms")
        out[f"{key}_head"], out[f"{key}_base"] = round(head, 3), round(base, 3)
        out[f"{name}_ratio"] = round(head / base, 3) if base else None
    print(
        "head / base: "
        + ", ".join(f"{k.removesuffix('_ms')} x{out[k.removesuffix('_ms') + '_ratio']}" for k in FIGURES)
    )
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
