"""Output moderation with the real NSFW classifier (NudeNet's ONNX detector, an optional extra: `pip install
--no-deps nudenet`; CI installs it, elsewhere the tests skip without it): a rendered image the classifier flags is
refused (`moderated`) and nothing of it is kept; one it passes says so in its provenance. No explicit image is
needed to show the refusal: the test makes a class the detector finds on any face block."""

from __future__ import annotations

import os

import grpc
import pytest
from skimage import data as skdata

from idlock import nsfw, refs
from idlock.errors import REASON_TRAILER, PreconditionFailed
from idlock.images import encode_png
from idlock.settings import StorageSettings
from idlock.storage import open_store
from idlock.v1 import render_service_pb2 as pb
from idlock.v1 import render_service_pb2_grpc as pb_grpc
from tests.harness import running_service

OFFLINE = {"IDLOCK_RENDER_PROVIDERS": '["compositor"]', "IDLOCK_RENDER_GEMINI_API_KEY": ""}


@pytest.fixture
def classifier_installed() -> None:
    if not nsfw.installed():
        reason = "the optional NSFW classifier is not installed (pip install --no-deps nudenet)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI installs the classifier: {reason}")
        pytest.skip(reason)


async def _request(tmp_path, job_id: str) -> pb.RenderImageRequest:
    store = await open_store(StorageSettings(), tmp_path)
    face = skdata.astronaut()
    ref = await refs.put_image(store, "characters/c1/ref_0.png", encode_png(face), width=512, height=512)
    return pb.RenderImageRequest(
        prompt="Arya walks through a market at noon",
        references=[ref],
        seed=11,
        job_id=job_id,
        output_prefix=f"jobs/{job_id}/",
    )


async def test_a_passing_image_says_it_was_classified(tmp_path, classifier_installed) -> None:
    async with running_service("render", tmp_path, **OFFLINE) as channel:
        done = await pb_grpc.RenderServiceStub(channel).RenderImage(await _request(tmp_path, "job_ok"))
    assert done.provenance.moderation == "nudenet: passed" and done.image.uri.endswith(
        "jobs/job_ok/image.png"
    )


async def test_a_flagged_image_is_refused_moderated_and_not_kept(tmp_path, classifier_installed) -> None:
    blocks_faces = {"IDLOCK_MODERATION_OUTPUT_BLOCK_LABELS": '["FACE_FEMALE", "FACE_MALE"]'}
    async with running_service("render", tmp_path, **OFFLINE, **blocks_faces) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await pb_grpc.RenderServiceStub(channel).RenderImage(await _request(tmp_path, "job_flag"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(err.value.trailing_metadata() or ()).get(REASON_TRAILER) == "moderated"
    assert "refused by the output classifier (nudenet: blocked (FACE_" in err.value.details()
    store = await open_store(StorageSettings(), tmp_path)
    assert await store.list("jobs/job_flag/") == []


async def test_without_a_classifier_results_say_they_were_not_classified(tmp_path) -> None:
    async with running_service(
        "render", tmp_path, **OFFLINE, IDLOCK_MODERATION_OUTPUT_CLASSIFIER="none"
    ) as ch:
        done = await pb_grpc.RenderServiceStub(ch).RenderImage(await _request(tmp_path, "job_none"))
    assert done.provenance.moderation.startswith("not classified")


def test_asking_for_the_classifier_without_it_installed_fails_fast(monkeypatch) -> None:
    monkeypatch.setattr(nsfw, "installed", lambda: False)
    with pytest.raises(PreconditionFailed, match="pip install --no-deps nudenet"):
        nsfw.OutputClassifier(nsfw.OutputModerationSettings(classifier="nudenet"))
    auto = nsfw.OutputClassifier(nsfw.OutputModerationSettings(classifier="auto"))
    assert not auto.enabled and auto.check(b"anything").note == nsfw.NOT_CLASSIFIED
