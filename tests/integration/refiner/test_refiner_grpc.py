"""The refiner service on a real gRPC server: characters from a (fake) memory service, images by ref, the render
strategy through the real render service and the real google-genai client against the fake Gemini server."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from unittest import mock

import grpc
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from idlock import refs
from idlock.faces.engine import get_engine
from idlock.images import decode_image, encode_png
from idlock.settings import PathsSettings, StorageSettings
from idlock.storage import open_store
from idlock.v1 import common_pb2
from idlock.v1 import refiner_service_pb2 as pb
from idlock.v1 import refiner_service_pb2_grpc as pb_grpc
from services.identity.settings import IdentitySettings
from services.render.models import RenderRequest
from services.render.providers.compositor import CompositorProvider
from tests.fakes.gemini_server import FakeGeminiServer
from tests.harness import FACES_DIR, serving
from tests.integration.orchestrator.fake_memory import fake_memory_server
from tests.metrics_probe import metrics_change

OFFLINE_RENDER = {"IDLOCK_RENDER_PROVIDERS": '["compositor"]', "IDLOCK_RENDER_GEMINI_API_KEY": ""}


def _photos(person: str) -> list[bytes]:
    d = FACES_DIR / person
    if not d.is_dir():
        pytest.skip(f"real face photos not present at {FACES_DIR} (set IDLOCK_FACES_DIR)")
    return [p.read_bytes() for p in sorted(d.glob("*.jp*g"))]


class Mesh:
    def __init__(self, data_dir: Path, store, memory, stub, gemini: FakeGeminiServer) -> None:
        self.data_dir, self.store, self.memory, self.stub, self.gemini = data_dir, store, memory, stub, gemini
        self.engine = get_engine(IdentitySettings())
        self._n = 0

    async def put(self, png: bytes) -> common_pb2.ImageRef:
        self._n += 1
        im = decode_image(png)
        return await refs.put_image(
            self.store, f"inputs/{self._n}.png", png, width=im.width, height=im.height
        )

    async def character(self, cid: str, photos: list[bytes]) -> tuple[str, common_pb2.IdentityVector, list]:
        ident = self.engine.encode_references(photos)
        vec = common_pb2.IdentityVector(encoder=ident.encoder, values=ident.vector.tolist())
        ref_images = [await self.put(encode_png(decode_image(p).pixels)) for p in photos]
        self.memory.add_character(cid, "owner-1", vec, ref_images)
        return cid, vec, ref_images


@pytest.fixture(scope="module")
async def mesh(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("refiner-mesh")
    with FakeGeminiServer() as gemini, mock.patch.dict(os.environ, {"IDLOCK_DATA_DIR": str(data_dir)}):
        store = await open_store(StorageSettings(), PathsSettings().data_dir)
        async with contextlib.AsyncExitStack() as stack:
            memory, memory_addr = await stack.enter_async_context(fake_memory_server())
            render = await stack.enter_async_context(
                serving(
                    "render",
                    data_dir,
                    IDLOCK_RENDER_PROVIDERS='["gemini"]',
                    IDLOCK_RENDER_GEMINI_API_KEY="test-key",
                    IDLOCK_RENDER_GEMINI_BASE_URL=gemini.base_url,
                    IDLOCK_RENDER_MAX_RETRIES="0",
                    IDLOCK_RENDER_WATERMARK="false",
                )
            )
            refiner = await stack.enter_async_context(
                serving(
                    "refiner",
                    data_dir,
                    IDLOCK_MEMORY_ADDR=memory_addr,
                    IDLOCK_RENDER_ADDR=render.address,
                    IDLOCK_REFINER_RENDER_SIZE="512",
                )
            )
            yield Mesh(data_dir, store, memory, pb_grpc.RefinerServiceStub(refiner.channel), gemini)


def _astronaut_png() -> bytes:
    return encode_png(skdata.astronaut())


def _drifted(
    references: list[bytes], *, drift: str, drift_face: bytes | None = None, size=640, seed=5
) -> bytes:
    r = CompositorProvider().render_sync(
        RenderRequest(
            prompt="a pilot in a field at sunset",
            references=references[:1],
            drift=drift,
            drift_face=drift_face,
            width=size,
            height=size,
            seed=seed,
            watermark=False,
        )
    )
    return r.image


async def test_reference_warp_repairs_a_drifted_face(mesh):
    cid, _, _ = await mesh.character("astro", [_astronaut_png()])
    scene = await mesh.put(_drifted([_astronaut_png()], drift="distorted"))
    with metrics_change() as grew:
        resp = await mesh.stub.Refine(
            pb.RefineRequest(
                image=scene,
                character_id=cid,
                threshold=0.75,
                max_attempts=2,
                strategy=pb.REFINE_STRATEGY_REFERENCE_WARP,
                job_id="job-warp",
            )
        )
    assert resp.face_found and resp.improved
    assert grew("idlock_refine_attempts_total", method="reference-warp", outcome="chosen") == 1
    assert resp.before.calibrated < resp.after.calibrated and resp.after.calibrated >= 0.75
    assert resp.before.encoder == "dlib"
    a = resp.attempts[0]
    assert a.strategy == pb.REFINE_STRATEGY_REFERENCE_WARP and a.eligible and a.seconds > 0 and a.seam >= 0
    assert resp.best.uri == a.image.uri and resp.best.uri != scene.uri
    assert (resp.best.width, resp.best.height) == (640, 640)


async def test_real_faces_other_face_drift_brought_to_pass(mesh):
    char = _photos("deepface_id01")
    other = _photos("deepface_id03")
    cid, _, _ = await mesh.character("id01", char[1:4])
    scene = await mesh.put(_drifted(char, drift="other_face", drift_face=other[0], size=1024))
    resp = await mesh.stub.Refine(
        pb.RefineRequest(image=scene, character_id=cid, strategy=pb.REFINE_STRATEGY_AUTO)
    )
    assert resp.before.calibrated < 0.5
    assert resp.improved and resp.after.calibrated >= 0.75
    assert resp.attempts[0].strategy == pb.REFINE_STRATEGY_REFERENCE_WARP  # auto: reference-warp first
    # the warp passed, but it moved a reference face in: a copy, so the render strategy was tried for a non-copy
    warp = resp.attempts[0]
    assert warp.eligible and warp.copy.checked and warp.copy.near_copy and warp.copy.similarity > 0.5
    assert len(resp.attempts) == 2 and resp.attempts[1].strategy == pb.REFINE_STRATEGY_RENDER
    assert resp.best.uri == warp.image.uri and resp.copy.near_copy  # no better attempt: the copy, flagged


async def test_multi_face_scene_touches_only_the_characters_face(mesh):
    char = _photos("deepface_id05")
    bystander = _photos("face_recognition_obama")
    cid, _, _ = await mesh.character("id05", char[1:4])
    # the character's face drifted (distorted), still its closest match in the scene; a bystander beside it
    left = decode_image(_drifted(char, drift="distorted", size=640)).pixels
    right = decode_image(_drifted(bystander, drift="none", size=640, seed=9)).pixels
    scene_rgb = np.concatenate([left, right], axis=1)
    scene = await mesh.put(encode_png(scene_rgb))
    resp = await mesh.stub.Refine(
        pb.RefineRequest(image=scene, character_id=cid, strategy=pb.REFINE_STRATEGY_REFERENCE_WARP)
    )
    assert resp.improved
    out = decode_image(await refs.fetch_ref(mesh.store, resp.best, "best")).pixels
    changed = np.any(out != scene_rgb, axis=-1)
    assert changed[:, :640].any()
    assert not changed[:, 640:].any()  # the bystander's half is bit-identical
    ys, xs = np.nonzero(changed)
    assert xs.max() - xs.min() < 400 and ys.max() - ys.min() < 400  # one face region, not the scene


async def test_input_kept_when_references_are_someone_else(mesh):
    """Identity given inline; references of a different person: no attempt beats the input, which comes back."""
    astro = _astronaut_png()
    ident = mesh.engine.encode_references([astro])
    crop_ref = await mesh.put(
        _drifted([astro], drift="distorted", seed=11)
    )  # a face that is not the astronaut
    scene = await mesh.put(_drifted([astro], drift="none", seed=12))
    resp = await mesh.stub.Refine(
        pb.RefineRequest(
            image=scene,
            identity=common_pb2.IdentityVector(encoder="dlib", values=ident.vector.tolist()),
            references=[crop_ref],
            threshold=0.99,
            max_attempts=2,
            strategy=pb.REFINE_STRATEGY_REFERENCE_WARP,
        )
    )
    assert not resp.improved
    assert resp.best == scene  # the input ref, unchanged
    assert resp.after == resp.before
    assert len(resp.attempts) == 2 and not any(a.eligible for a in resp.attempts)


async def test_render_strategy_sends_face_crop_and_references_to_gemini(mesh):
    astro = _astronaut_png()
    cid, _, ref_images = await mesh.character("astro-render", [astro])
    scene_png = _drifted([astro], drift="distorted", seed=21)
    scene = await mesh.put(scene_png)
    before = len(mesh.gemini.requests)
    resp = await mesh.stub.Refine(
        pb.RefineRequest(image=scene, character_id=cid, max_attempts=1, strategy=pb.REFINE_STRATEGY_RENDER)
    )
    req = mesh.gemini.requests[before]
    assert "exactly the person shown in the reference images" in req.texts[0]
    images = req.images
    crop = Image.open(io.BytesIO(images[0]))
    assert max(crop.size) == 512  # the face crop, upscaled to IDLOCK_REFINER_RENDER_SIZE
    assert Image.open(io.BytesIO(images[1])).mode in ("L", "RGB")  # the face mask
    stored_ref = await refs.fetch_ref(mesh.store, ref_images[0], "ref")
    assert images[2:] == [stored_ref]  # the character's references
    # the fake answers a flat colour: no face where the face was, so the input is kept
    assert len(resp.attempts) == 1 and resp.attempts[0].strategy == pb.REFINE_STRATEGY_RENDER
    assert not resp.attempts[0].eligible and not resp.improved and resp.best == scene


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("no_face", grpc.StatusCode.FAILED_PRECONDITION),
        ("unknown_character", grpc.StatusCode.NOT_FOUND),
        ("not_an_image", grpc.StatusCode.INVALID_ARGUMENT),
        ("no_image", grpc.StatusCode.INVALID_ARGUMENT),
        ("no_character", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_bad_input_status_codes(mesh, case, code):
    if "astro" not in mesh.memory.characters:
        await mesh.character("astro", [_astronaut_png()])
    req = pb.RefineRequest(character_id="astro")
    if case == "no_face":
        req.image.CopyFrom(await mesh.put(encode_png(np.full((200, 300, 3), 90, np.uint8))))
    elif case == "unknown_character":
        req.image.CopyFrom(await mesh.put(_astronaut_png()))
        req.character_id = "nobody"
    elif case == "not_an_image":
        stored = await mesh.store.put("inputs/not-an-image.txt", b"hello, not pixels", "text/plain")
        req.image.CopyFrom(common_pb2.ImageRef(uri=stored.uri, sha256=stored.sha256))
    elif case == "no_character":
        req.image.CopyFrom(await mesh.put(_astronaut_png()))
        req.character_id = ""
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await mesh.stub.Refine(req)
    assert e.value.code() == code
    if case == "no_face":
        assert "no face" in e.value.details()
