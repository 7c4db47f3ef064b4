"""Where the identity service's model work runs (`services.identity.workers`): with isolation=process in worker
processes, each with its own models, so the service's loop never holds the GIL for a face; with isolation=thread
in the service's own process. Both give the same answers, and a model error crosses the process boundary with its
type, message and details."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data as skdata

from idlock.errors import PreconditionFailed
from idlock.images import encode_png
from idlock.natsd import free_port
from services.identity.settings import IdentitySettings
from services.identity.workers import IdentityModels


@pytest.fixture(scope="module")
def astronaut_png() -> bytes:
    return encode_png(skdata.astronaut())


async def _models(isolation: str) -> IdentityModels:
    models = IdentityModels(IdentitySettings(isolation=isolation, workers=2))
    await models.start()
    return models


async def test_process_and_thread_isolation_answer_alike(astronaut_png: bytes) -> None:
    blank = encode_png(np.full((64, 64, 3), 128, dtype=np.uint8))
    found = {}
    for isolation in ("process", "thread"):
        models = await _models(isolation)
        try:
            pids = {i.pid for i in await asyncio.gather(*(models.run("info") for _ in range(8)))}
            if isolation == "process":
                assert os.getpid() not in pids and 1 <= len(pids) <= 2
            else:
                assert pids == {os.getpid()}
            faces, width, height = await models.run("detect", astronaut_png)
            assert (width, height) == (512, 512) and len(faces) == 1
            identity = await models.run("encode_references", [astronaut_png])
            found[isolation] = (faces[0].box, identity.vector)
            with pytest.raises(PreconditionFailed) as err:
                await models.run("compare_images", astronaut_png, blank)
            assert (
                "no face found in image b" in err.value.message and err.value.details["reason"] == "no_face"
            )
            with pytest.raises(ValueError, match="not an identity model call"):
                await models.run("__init__")
        finally:
            await models.close()
    assert found["process"][0] == found["thread"][0]
    assert np.allclose(found["process"][1], found["thread"][1], atol=1e-6)


def test_workers_end_with_a_killed_service(tmp_path) -> None:
    port = free_port()
    env = {**os.environ, "IDLOCK_DATA_DIR": str(tmp_path), "IDLOCK_IDENTITY_PORT": str(port)}
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen([sys.executable, "-m", "services.identity"], cwd=root, env=env)
    try:
        deadline = time.monotonic() + 90
        children: list[str] = []
        while len(children) < 2:  # the two workers (and the pool's resource tracker)
            assert proc.poll() is None and time.monotonic() < deadline, (
                "the service did not start its workers"
            )
            time.sleep(0.5)
            children = subprocess.run(
                ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
            ).stdout.split()
        proc.send_signal(signal.SIGKILL)  # no time for the pool's own shutdown
        proc.wait()
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{c}").exists() for c in children):
            assert time.monotonic() < deadline, f"workers outlived the killed service: {children}"
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.kill()
