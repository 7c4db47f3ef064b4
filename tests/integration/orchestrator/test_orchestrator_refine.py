"""The refine step against a real refiner service: a drifted render is repaired and becomes the job's result;
without a reachable refiner the job still succeeds with the unrefined image and says why."""

from __future__ import annotations

import os
import uuid
from unittest import mock

import pytest
from skimage import data as skdata

from idlock import refs
from idlock.images import encode_png
from idlock.natsd import free_port
from idlock.settings import StorageSettings
from idlock.storage import open_store
from idlock.v1 import common_pb2
from idlock.v1 import orchestrator_service_pb2 as pb
from services.orchestrator.image_flow import REFINER_UNAVAILABLE
from services.render.models import RenderRequest
from services.render.providers.compositor import CompositorProvider
from tests.harness import serving
from tests.integration.orchestrator.conftest import orchestrator
from tests.metrics_probe import metrics_change

SUCCEEDED_OR_FAILED = [common_pb2.JOB_STATUS_SUCCEEDED, common_pb2.JOB_STATUS_FAILED]


async def _drifting_character(peers) -> str:
    """References whose first face is a distorted astronaut (the compositor pastes it: the render drifts) and
    whose second is the astronaut (the refiner warps it back); the identity is the astronaut's."""
    store = await open_store(StorageSettings(), peers.data_dir)
    astro = encode_png(skdata.astronaut())
    drifted = CompositorProvider().render_sync(
        RenderRequest(
            prompt="portrait",
            references=[astro],
            drift="distorted",
            width=512,
            height=512,
            seed=4,
            watermark=False,
        )
    )
    bad = await refs.put_image(store, "characters/drift/ref_0.png", drifted.image, width=512, height=512)
    cid = f"char_drift_{uuid.uuid4().hex[:8]}"
    peers.memory.add_character(cid, "owner-1", peers.identity, [bad, *peers.references])
    return cid


async def test_drifted_render_is_refined_and_becomes_the_result(peers, tmp_path) -> None:
    async with serving(
        "refiner",
        peers.data_dir,
        IDLOCK_MEMORY_ADDR=peers.env["IDLOCK_MEMORY_ADDR"],
        IDLOCK_RENDER_ADDR=peers.env["IDLOCK_RENDER_ADDR"],
    ) as refiner:
        with mock.patch.dict(os.environ, {"IDLOCK_REFINER_ADDR": refiner.address}):
            async with orchestrator(peers, tmp_path) as orch:
                cid = await _drifting_character(peers)
                # a fixed seed: the same scene every run (the drifted face is detectable in it)
                with metrics_change() as grew:
                    resp = await orch.submit(cid, options=pb.GenerationOptions(refine_face=True, seed=3))
                    job = await orch.wait_status(resp.job.id, SUCCEEDED_OR_FAILED, timeout_s=60)
    assert job.status == common_pb2.JOB_STATUS_SUCCEEDED, job.error_message
    m = job.metrics
    assert m.refine_needed and m.refined, m.refine_note
    assert grew("idlock_refine_total", outcome="refined") == 1
    assert grew("idlock_idr_sum", encoder="dlib", stage="after") == pytest.approx(
        m.idr_after.calibrated, abs=1e-6
    )
    assert grew("idlock_idr_sum", encoder="dlib", stage="final") == pytest.approx(
        m.idr_after.calibrated, abs=1e-6
    )
    assert grew("idlock_idr_sum", encoder="dlib", stage="before") == pytest.approx(
        m.idr_before.calibrated, abs=1e-6
    )
    assert m.idr_after.calibrated > m.idr_before.calibrated and m.idr_after.encoder == "dlib"
    assert m.refine_note.startswith("refined by reference-warp")
    assert f"refine/{job.id}/" in job.result_image.uri  # the refined image is the job's result
    eps = [e for (c, _), e in peers.memory.episodes.items() if c == cid]
    assert eps[0].image.uri == job.result_image.uri
    assert eps[0].idr.calibrated == m.idr_after.calibrated


async def test_unreachable_refiner_keeps_the_image(peers, tmp_path) -> None:
    with mock.patch.dict(os.environ, {"IDLOCK_REFINER_ADDR": f"127.0.0.1:{free_port()}"}):
        async with orchestrator(peers, tmp_path, refine_timeout_s=5.0) as orch:
            cid = peers.add_character()
            with metrics_change() as grew:
                resp = await orch.submit(cid, options=pb.GenerationOptions(refine_face=True))
                job = await orch.wait_status(resp.job.id, SUCCEEDED_OR_FAILED, timeout_s=60)
    assert job.status == common_pb2.JOB_STATUS_SUCCEEDED, job.error_message
    m = job.metrics
    assert m.refine_needed and not m.refined
    assert (
        grew("idlock_refine_total", outcome="unavailable") == 1
        and grew("idlock_idr_count", stage="after") == 0
    )
    assert m.refine_note.startswith(REFINER_UNAVAILABLE) and "refiner.Refine" in m.refine_note
    assert job.result_image.uri.endswith(f"jobs/{job.id}/image.png")
