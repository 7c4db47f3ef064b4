"""The identity service over gRPC (real server on port 0): proto mapping, refs through storage, and every bad
input answered with a clear status code and message."""

from __future__ import annotations

import asyncio
import io

import cv2
import grpc
import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from idlock import refs
from idlock.images import encode_png
from idlock.settings import StorageSettings
from idlock.storage import open_store
from idlock.v1 import common_pb2
from idlock.v1 import identity_service_pb2 as pb
from idlock.v1 import identity_service_pb2_grpc as pb_grpc
from tests.harness import running_service


def _png(rgb: np.ndarray) -> bytes:
    return encode_png(rgb)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skdata.astronaut()


def _inline(data: bytes) -> common_pb2.ImageInput:
    return common_pb2.ImageInput(data=data)


async def _call_fails(call, code: grpc.StatusCode, *fragments: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    assert err.value.code() == code, err.value.details()
    for fragment in fragments:
        assert fragment in err.value.details()
    return err.value.details()


async def test_encode_score_compare_and_detect(tmp_path, astronaut) -> None:
    async with running_service("identity", tmp_path) as channel:
        stub = pb_grpc.IdentityServiceStub(channel)
        png = _png(astronaut)
        enc = await stub.EncodeReferences(pb.EncodeReferencesRequest(images=[_inline(png)]))
        assert enc.identity.encoder == "dlib" and len(enc.identity.values) == 128
        assert abs(np.linalg.norm(enc.identity.values) - 1) < 1e-5
        assert enc.quality[0].accepted and enc.quality[0].faces_found == 1

        # same face, resized: pass or golden; raw and calibrated both reported
        smaller = cv2.resize(astronaut, (384, 384), interpolation=cv2.INTER_AREA)
        scored = await stub.ScoreIdentity(
            pb.ScoreIdentityRequest(
                characters=[pb.CharacterIdentity(character_id="char_a", identity=enc.identity)],
                image=_inline(_png(smaller)),
            )
        )
        match = scored.matches[0]
        assert scored.faces_detected == 1 and not scored.no_face
        assert match.face_found and match.score.verdict in (
            common_pb2.VERDICT_PASS,
            common_pb2.VERDICT_GOLDEN,
        )
        assert match.score.raw > 0.9 and 0.75 <= match.score.calibrated <= 1
        assert match.box.width > 50 and len(match.landmarks) == 5
        assert len(match.face_embedding.values) == 128 and match.face_embedding.encoder == "dlib"

        cmp = await stub.CompareImages(pb.CompareImagesRequest(a=_inline(png), b=_inline(_png(smaller))))
        assert cmp.score.calibrated >= 0.75

        det = await stub.DetectFaces(pb.DetectFacesRequest(image=_inline(png)))
        assert len(det.faces) == 1 and (det.image_width, det.image_height) == (512, 512)
        assert det.faces[0].blur > 0 and abs(det.faces[0].pose.yaw) < 45


async def test_scores_say_whether_the_face_is_a_copy_of_a_reference(tmp_path, astronaut, faces_root) -> None:
    """A reference resized and re-coloured is a near-copy; another photo of the same person is not (IDR passes both)."""
    photos = sorted((faces_root / "deepface_id01").glob("*.jpg"))[:2]
    ref, other = (p.read_bytes() for p in photos)
    async with running_service("identity", tmp_path) as channel:
        stub = pb_grpc.IdentityServiceStub(channel)
        enc = await stub.EncodeReferences(pb.EncodeReferencesRequest(images=[_inline(ref)]))
        rgb = np.asarray(Image.open(io.BytesIO(ref)).convert("RGB"))
        copied = cv2.resize(rgb, (rgb.shape[1] // 2, rgb.shape[0] // 2), interpolation=cv2.INTER_AREA)
        copied = np.clip(copied.astype(np.float32) * 1.2 + 15, 0, 255).astype(np.uint8)
        character = pb.CharacterIdentity(character_id="c", identity=enc.identity, references=[_inline(ref)])
        seen = {}
        for name, image in (("copy", _png(copied)), ("other photo", other)):
            scored = await stub.ScoreIdentity(
                pb.ScoreIdentityRequest(characters=[character], image=_inline(image))
            )
            seen[name] = scored.matches[0]
        assert seen["copy"].copy.checked and seen["copy"].copy.near_copy, seen["copy"].copy
        assert seen["copy"].copy.similarity > 0.95 and seen["copy"].copy.reference_index == 0
        assert seen["other photo"].copy.checked and not seen["other photo"].copy.near_copy
        assert seen["other photo"].copy.similarity < seen["copy"].copy.threshold
        assert (
            seen["other photo"].score.calibrated >= 0.75
        )  # the same person: IDR passes, the copy check does not
        # without references nothing is compared, and the response says so
        bare = await stub.ScoreIdentity(
            pb.ScoreIdentityRequest(
                characters=[pb.CharacterIdentity(character_id="c", identity=enc.identity)],
                image=_inline(other),
            )
        )
        assert not bare.matches[0].copy.checked
        cmp = await stub.CompareImages(pb.CompareImagesRequest(a=_inline(ref), b=_inline(_png(copied))))
        assert cmp.copy.near_copy and cmp.copy.similarity > 0.95


async def test_a_reference_print_is_kept_in_memory_at_most_its_max_age(tmp_path, astronaut) -> None:
    """A face print is biometric data that a character's erasure cannot name: within its max age a score uses the
    print it holds; after it, the print is gone and the deleted photo is needed again, so the score is refused."""
    store = await open_store(StorageSettings(), tmp_path)
    png = _png(astronaut)
    ref = await refs.put_image(store, "characters/c/ref0.png", png, width=512, height=512)
    async with running_service(
        "identity", tmp_path, IDLOCK_IDENTITY_REFERENCE_CACHE_MAX_AGE_S="0.4"
    ) as channel:
        stub = pb_grpc.IdentityServiceStub(channel)
        enc = await stub.EncodeReferences(pb.EncodeReferencesRequest(images=[_inline(png)]))
        character = pb.CharacterIdentity(
            character_id="c", identity=enc.identity, references=[common_pb2.ImageInput(ref=ref)]
        )
        scene = pb.ScoreIdentityRequest(characters=[character], image=_inline(png))
        first = await stub.ScoreIdentity(scene)
        assert first.matches[0].copy.checked and first.matches[0].copy.near_copy
        assert await store.delete(ref.uri)  # the character is erased
        again = await stub.ScoreIdentity(scene)  # the print held is used: the photo is not read
        assert again.matches[0].copy.near_copy
        await asyncio.sleep(0.6)  # past the max age (the expiry runs every quarter of it)
        await _call_fails(
            stub.ScoreIdentity(scene), grpc.StatusCode.NOT_FOUND, "reference image 0 of 'c'", "ref0.png"
        )


async def test_scene_without_a_face_says_so(tmp_path, astronaut) -> None:
    async with running_service("identity", tmp_path) as channel:
        stub = pb_grpc.IdentityServiceStub(channel)
        enc = await stub.EncodeReferences(pb.EncodeReferencesRequest(images=[_inline(_png(astronaut))]))
        sky = np.zeros((256, 256, 3), np.uint8)
        sky[:] = (90, 140, 220)
        scored = await stub.ScoreIdentity(
            pb.ScoreIdentityRequest(
                characters=[pb.CharacterIdentity(character_id="c", identity=enc.identity)],
                image=_inline(_png(sky)),
            )
        )
        assert scored.no_face and scored.faces_detected == 0 and not scored.matches[0].face_found


async def test_bad_inputs_get_clear_status_codes(tmp_path, astronaut) -> None:
    async with running_service("identity", tmp_path) as channel:
        stub = pb_grpc.IdentityServiceStub(channel)
        png = _png(astronaut)
        blank = _png(np.full((200, 200, 3), 127, np.uint8))
        invalid = grpc.StatusCode.INVALID_ARGUMENT

        await _call_fails(
            stub.DetectFaces(pb.DetectFacesRequest(image=_inline(b"%PDF-1.4 not an image"))),
            invalid,
            "not an image",
        )
        await _call_fails(
            stub.DetectFaces(pb.DetectFacesRequest(image=_inline(png[: len(png) // 2]))), invalid, "truncated"
        )
        await _call_fails(stub.DetectFaces(pb.DetectFacesRequest()), invalid, "image is missing")
        await _call_fails(
            stub.EncodeReferences(pb.EncodeReferencesRequest(images=[_inline(png)] * 6)), invalid, "at most 5"
        )
        await _call_fails(stub.EncodeReferences(pb.EncodeReferencesRequest()), invalid, "at least one")
        await _call_fails(
            stub.EncodeReferences(pb.EncodeReferencesRequest(images=[_inline(png), _inline(blank)])),
            grpc.StatusCode.FAILED_PRECONDITION,
            "no face found in reference image 1",
        )
        await _call_fails(
            stub.ScoreIdentity(
                pb.ScoreIdentityRequest(
                    characters=[
                        pb.CharacterIdentity(
                            character_id="c", identity=common_pb2.IdentityVector(values=[1, 0])
                        )
                    ],
                    image=_inline(png),
                )
            ),
            invalid,
            "2 dimensions",
        )
        await _call_fails(
            stub.DetectFaces(
                pb.DetectFacesRequest(
                    image=common_pb2.ImageInput(ref=common_pb2.ImageRef(uri="s3://other/x.png"))
                )
            ),
            invalid,
        )
        # a GIF decodes; a TGA-like blob without a signature does not
        buf = io.BytesIO()
        Image.fromarray(astronaut).save(buf, format="GIF")
        det = await stub.DetectFaces(pb.DetectFacesRequest(image=_inline(buf.getvalue())))
        assert len(det.faces) == 1
