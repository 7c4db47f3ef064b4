"""Near-copies of a reference in image jobs, with a renderer that answers like a real edit model (the fake Gemini
server behind the real render service) and the real identity service: regenerate once with a re-pose instruction
(the default), flag, or fail; the job's metrics say which, and a near-copy is never golden."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from idlock import refs
from idlock.settings import StorageSettings
from idlock.storage import open_store
from idlock.v1 import common_pb2
from services.orchestrator.image_flow import REPOSE
from tests.fakes.gemini_server import FakeGeminiServer, Reply
from tests.integration.orchestrator.conftest import Peers, mesh_peers, orchestrator
from tests.metrics_probe import Change, metrics_change

PROMPT = "Arya stands on a cliff at sunset in a red cloak"


@pytest.fixture(scope="module")
def fake_gemini() -> FakeGeminiServer:
    with FakeGeminiServer() as fake:
        yield fake


@pytest.fixture(scope="module")
def photos(faces_dir: Path) -> tuple[bytes, bytes]:
    """Two photos of one person: the character's reference, and another that an honest model could answer."""
    one, two = sorted((faces_dir / "deepface_id01").glob("*.jpg"))[:2]
    return one.read_bytes(), two.read_bytes()


@pytest.fixture(scope="module")
async def gemini_peers(nats_server, tmp_path_factory, fake_gemini, photos) -> AsyncIterator[Peers]:
    data_dir = tmp_path_factory.mktemp("copy-mesh")
    store = await open_store(StorageSettings(), data_dir)
    ref = await refs.put_image(
        store, "characters/arya/ref_0.jpg", photos[0], width=0, height=0, mime="image/jpeg"
    )
    render_env = {
        "IDLOCK_RENDER_PROVIDERS": '["gemini"]',
        "IDLOCK_RENDER_GEMINI_API_KEY": "test-key",
        "IDLOCK_RENDER_GEMINI_BASE_URL": fake_gemini.base_url,
        "IDLOCK_RENDER_MAX_RETRIES": "0",
    }
    async with mesh_peers(nats_server, data_dir, ref, render_env) as peers:
        yield peers


async def _run(o, peers: Peers):
    cid = peers.add_character()
    accepted = await o.submit(cid, PROMPT)
    return await o.wait_status(
        accepted.job.id, (common_pb2.JOB_STATUS_SUCCEEDED, common_pb2.JOB_STATUS_FAILED), timeout_s=60
    )


async def test_a_copy_is_regenerated_and_an_honest_answer_kept(
    gemini_peers, fake_gemini, photos, tmp_path
) -> None:
    fake_gemini.reset()
    fake_gemini.script(Reply.copy(), Reply.ok(image=photos[1]))
    async with orchestrator(gemini_peers, tmp_path, near_copy="regenerate") as o:
        writes = o.log_writes()
        with metrics_change() as grew:
            job = await _run(o, gemini_peers)
    assert job.status == common_pb2.JOB_STATUS_SUCCEEDED, job.error_message
    m = job.metrics
    assert m.regenerated and m.copy.checked and not m.copy.near_copy, m
    # written before each render (a cancel stops it there) and with the score; the second render rides with the
    # commit, since the refiner's gate and the heuristic state that come between call nothing
    assert not m.refine_needed and m.state_source == "heuristic"
    assert writes == [
        ("render", ["context"]),
        ("render", ["context", "render"]),
        ("regenerate", ["context", "render", "score"]),
        ("record", ["context", "refine", "regenerate", "render", "score", "state"], "commit"),
    ], writes
    assert grew("idlock_near_copies_total", action="regenerated") == 1
    assert grew("idlock_job_step_seconds_count", step="regenerate") == 1
    assert m.copy_note.startswith(
        "regenerated once to re-pose: the first output was a near-copy of reference 1"
    )
    assert m.idr_before.calibrated >= 0.75  # the other photo is the same person
    assert len(fake_gemini.requests) == 2 and REPOSE in " ".join(fake_gemini.requests[1].texts)
    assert "regenerate" in m.step_seconds and m.step_seconds["regenerate"] > 0
    episode = next(e for e in gemini_peers.memory.episodes.values() if e.job_id == job.id)
    assert episode.copy.checked and not episode.copy.near_copy


async def test_still_a_copy_after_regenerating_is_flagged(gemini_peers, fake_gemini, tmp_path) -> None:
    fake_gemini.reset()
    fake_gemini.script(Reply.copy(), Reply.edit())  # the edit model re-poses the reference face: still a copy
    async with orchestrator(gemini_peers, tmp_path, near_copy="regenerate") as o:
        job = await _run(o, gemini_peers)
    assert job.status == common_pb2.JOB_STATUS_SUCCEEDED, job.error_message
    m = job.metrics
    assert m.regenerated and m.copy.near_copy and m.copy.similarity >= m.copy.threshold, m
    assert m.copy_note.startswith("flagged: regenerated once to re-pose"), m.copy_note
    assert len(fake_gemini.requests) == 2
    assert next(e for e in gemini_peers.memory.episodes.values() if e.job_id == job.id).copy.near_copy


async def test_flag_and_fail_settings(gemini_peers, fake_gemini, tmp_path) -> None:
    fake_gemini.reset()
    fake_gemini.answer = "copy"
    (tmp_path / "flag").mkdir()
    (tmp_path / "fail").mkdir()
    grew = Change()
    async with orchestrator(gemini_peers, tmp_path / "flag", near_copy="flag") as o:
        flagged = await _run(o, gemini_peers)
    assert flagged.status == common_pb2.JOB_STATUS_SUCCEEDED
    assert flagged.metrics.copy.near_copy and not flagged.metrics.regenerated
    assert flagged.metrics.copy_note.startswith("flagged: the output is a near-copy of reference 1")
    assert len(fake_gemini.requests) == 1
    async with orchestrator(gemini_peers, tmp_path / "fail", near_copy="fail") as o:
        failed = await _run(o, gemini_peers)
    assert failed.status == common_pb2.JOB_STATUS_FAILED and failed.error_code == "near_copy"
    assert "near-copy of reference 1" in failed.error_message and "NEAR_COPY=fail" in failed.error_message
    assert grew("idlock_near_copies_total", action="flagged") == 1
    assert grew("idlock_near_copies_total", action="failed") == 1
    assert grew("idlock_jobs_finished_total", status="failed") == 1
    fake_gemini.answer = "colour"
