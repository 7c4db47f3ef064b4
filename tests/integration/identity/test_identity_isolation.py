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

from idlock.errors import InvalidInput, PreconditionFailed
from idlock.images import encode_png
from idlock.natsd import free_port
from services.identity.settings import IdentitySettings
from services.identity.workers import IdentityModels
from tests.metrics_probe import metrics_change


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
            infos = await asyncio.gather(*(models.run("info") for _ in range(8)))
            pids = {i.pid for i in infos}
            assert {i.runs_on for i in infos} == {"CPU"}  # the shipped dlib wheel is built without CUDA
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


@pytest.mark.parametrize("isolation", ["process", "thread"])
async def test_scene_scorings_that_arrive_together_go_to_a_worker_as_one_batch(
    astronaut_png: bytes, isolation: str
) -> None:
    """With one worker busy on the first scene, the next three wait and are sent together: one embedding pass
    over their faces, each caller still getting its own answer (or its own error)."""
    models = IdentityModels(IdentitySettings(isolation=isolation, workers=1, batch_max=8))
    await models.start()
    try:
        identity = (await models.run("encode_references", [astronaut_png])).vector
        alone = await models.run("score_identity", {"a": identity}, astronaut_png, None, None)
        assert list(models.batchers["score_identity"].sizes) == [1]
        wrong_size = {"a": np.ones(7)}
        calls = [
            models.run("score_identity", {"a": identity}, astronaut_png, None, None),
            models.run("score_identity", {"a": identity, "b": identity}, astronaut_png, None, None),
            models.run("score_identity", wrong_size, astronaut_png, None, None),
            models.run("score_identity", {"a": identity}, astronaut_png, None, None),
        ]
        with metrics_change() as grew:
            answers = await asyncio.gather(*calls, return_exceptions=True)
        assert list(models.batchers["score_identity"].sizes) == [1, 1, 3]
        assert grew("idlock_identity_batch_size_count") == 2 and grew("idlock_identity_batch_size_sum") == 4
        assert isinstance(answers[2], InvalidInput) and "'a' has 7 dimensions" in answers[2].message, answers[
            2
        ]
        for answer in (answers[0], answers[1], answers[3]):
            assert not isinstance(answer, Exception), answer
            assert answer.matches[0].found
            assert np.isclose(answer.matches[0].raw, alone.matches[0].raw, atol=1e-6)
        assert [m.character for m in answers[1].matches] == ["a", "b"]
        assert answers[1].matches[1].verdict == "unmatched"  # one face, two characters
    finally:
        await models.close()
    # batch_max=1: no batching at all
    single = IdentityModels(IdentitySettings(isolation="thread", workers=1, batch_max=1))
    await single.start()
    try:
        await asyncio.gather(
            *(single.run("score_identity", {"a": identity}, astronaut_png, None, None) for _ in range(3))
        )
        assert list(single.batchers["score_identity"].sizes) == []
    finally:
        await single.close()
