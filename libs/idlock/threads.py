"""How many threads the CPU model libraries of one process may use, and at what priority model work runs.

torch, OpenCV and OpenMP/BLAS size their pools from the machine's core count, not from the cgroup quota of a pod
or from the other services sharing the machine (`idlock up` runs them all on one host). Several processes each
spinning a pool per core slow every request down, so each service sets its pools once at start-up.

Model work (face models, the renderer) keeps the CPUs busy for hundreds of milliseconds per scene. On a shared
host every request hop (a query, a gRPC call, a NATS message) otherwise waits behind it for a CPU; model threads at
SCHED_IDLE give way to those short bursts at once, and still get every CPU cycle nobody else wants.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

log = logging.getLogger("idlock.threads")

ModelThreadPriority = Literal["normal", "idle"]

POOL_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by the cgroup's quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), or None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota_us <= 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may run on: its affinity, capped by the cgroup quota (rounded up), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def limit_cpu_threads(threads: int = 0) -> int:
    """Size the pools of this process (0: `available_cpus()`); returns the number used. Libraries imported later
    read the environment; torch and OpenCV, when already imported, are set directly."""
    n = threads or available_cpus()
    for name in POOL_VARIABLES:
        os.environ[name] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(n)
    return n


def pool_size() -> int:
    """The pool size this process was given (`limit_cpu_threads` sets it in the environment at start-up), read
    without importing torch: for libraries that take a thread count (onnxruntime's intra-op threads)."""
    value = os.environ.get(POOL_VARIABLES[0], "")
    return int(value) if value.isdigit() and int(value) > 0 else available_cpus()


def lower_this_thread(priority: ModelThreadPriority) -> bool:
    """Give the calling thread (not its process) `priority`; True when it was lowered. "idle" is Linux's SCHED_IDLE:
    any other runnable thread on the machine preempts it. Elsewhere the thread stays as it is."""
    if priority != "idle":
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # pid 0: this thread
    except (AttributeError, OSError) as e:
        log.info("model threads keep normal priority: SCHED_IDLE is not available here (%s)", e)
        return False
    return True


def model_executor(workers: int, name: str, priority: ModelThreadPriority) -> ThreadPoolExecutor:
    """A pool for model work only: its threads run at `priority` (I/O stays on other threads, at normal priority)."""
    return ThreadPoolExecutor(
        max_workers=workers, thread_name_prefix=name, initializer=lower_this_thread, initargs=(priority,)
    )
