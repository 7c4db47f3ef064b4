"""gRPC surface of the identity service: proto <-> `IdentityEngine`. Model work runs in worker processes (or
threads), as `workers.py` says; decoding videos into frames runs on a thread."""

from __future__ import annotations

import asyncio
import hashlib

import numpy as np

from idlock import refs
from idlock.aged_cache import MISSING, AgedCache
from idlock.errors import InvalidInput
from idlock.faces.cast import PLACEMENTS
from idlock.faces.proto import copy_pb, face_pb, idr_pb
from idlock.grpc_server import ServiceSpec
from idlock.images import encode_png
from idlock.launch import servicer_spec
from idlock.settings import PathsSettings, StorageSettings
from idlock.storage import ObjectStore, open_store
from idlock.v1 import common_pb2
from idlock.v1 import identity_service_pb2 as pb
from idlock.v1 import identity_service_pb2_grpc as pb_grpc
from services.identity.settings import IdentitySettings
from services.identity.workers import EngineInfo, IdentityModels

SETTINGS = IdentitySettings
#: reference prints kept (by the image's sha256): a character's references are printed once, not per score (each
#: for at most IDLOCK_IDENTITY_REFERENCE_CACHE_MAX_AGE_S)
PRINT_CACHE_SIZE = 1024


class IdentityServicer(pb_grpc.IdentityServiceServicer):
    def __init__(self, settings: IdentitySettings) -> None:
        self.settings = settings
        self.models = IdentityModels(settings)
        self.info: EngineInfo | None = None
        self.store: ObjectStore | None = None
        self.prints: AgedCache[str, np.ndarray | None] = AgedCache(
            PRINT_CACHE_SIZE, settings.reference_cache_max_age_s
        )

    async def startup(self) -> None:
        self.info = await self.models.start()  # models load before the service reports SERVING
        self.store = await open_store(StorageSettings(), PathsSettings().data_dir)
        self.prints.start()

    async def shutdown(self) -> None:
        await self.prints.close()
        await self.models.close()

    @property
    def encoder(self) -> str:
        assert self.info is not None
        return self.info.encoder

    async def _image(self, image: common_pb2.ImageInput, name: str) -> bytes:
        return await refs.image_bytes(self.store, image, name)

    async def _reference_prints(self, key: str, images) -> list[np.ndarray | None]:
        """Prints of a character's reference faces, from the cache when the image's sha256 is known."""
        out: list[np.ndarray | None] = []
        for i, image in enumerate(images):
            name = f"reference image {i} of {key!r}"
            data, digest = None, image.ref.sha256 if image.HasField("ref") else ""
            if not digest:
                data = await self._image(image, name)
                digest = hashlib.sha256(data).hexdigest()
            found = self.prints.get(digest)
            if found is MISSING:
                data = data if data is not None else await self._image(image, name)
                found = (await self.models.run("reference_prints", [data]))[0]
                self.prints.put(digest, found)
            out.append(found)
        return out

    async def DetectFaces(self, request: pb.DetectFacesRequest, context) -> pb.DetectFacesResponse:
        data = await self._image(request.image, "image")
        faces, width, height = await self.models.run("detect", data)
        return pb.DetectFacesResponse(
            faces=[face_pb(f) for f in faces], image_width=width, image_height=height
        )

    async def EncodeReferences(
        self, request: pb.EncodeReferencesRequest, context
    ) -> pb.EncodeReferencesResponse:
        if request.encoder and request.encoder != self.encoder:
            raise InvalidInput(
                f"encoder {request.encoder!r} is not served here; this service runs {self.encoder!r}"
            )
        images = [await self._image(img, f"reference image {i}") for i, img in enumerate(request.images)]
        identity = await self.models.run("encode_references", images)
        if self.info is not None and self.info.protected_faces:
            await self.models.run("gallery_check", list(identity.views))
        name = identity.encoder
        quality = []
        for q in identity.qualities:
            quality.append(
                pb.ReferenceQuality(
                    index=q.index,
                    faces_found=q.face_count,
                    multiple_faces=q.multiple_faces,
                    face_size_px=q.face.size_px,
                    blur=q.face.blur,
                    too_small=q.small_face,
                    too_blurry=q.blurry,
                    inconsistent=q.inconsistent,
                    similarity_to_others=q.consistency if q.consistency is not None else 1.0,
                    accepted=q.index in identity.used_indices,
                    issues=q.warnings,
                    face=face_pb(q.face),
                )
            )
        return pb.EncodeReferencesResponse(
            identity=common_pb2.IdentityVector(encoder=name, values=identity.vector.tolist()),
            views=[common_pb2.IdentityVector(encoder=name, values=v.tolist()) for v in identity.views],
            quality=quality,
            inconsistent_indices=identity.inconsistent_indices,
            consistent=not identity.inconsistent_indices,
        )

    async def ScoreIdentity(self, request: pb.ScoreIdentityRequest, context) -> pb.ScoreIdentityResponse:
        if not request.characters:
            raise InvalidInput("characters is empty: give at least one character identity to score")
        identities: dict[str, np.ndarray] = {}
        references: dict[str, list[np.ndarray | None]] = {}
        placements: dict[str, str] = {}
        for i, c in enumerate(request.characters):
            key = c.character_id or f"character {i}"
            if key in identities:
                raise InvalidInput(f"character {key!r} is listed twice")
            if c.identity.encoder and c.identity.encoder != self.encoder:
                raise InvalidInput(
                    f"identity of {key!r} was made by encoder {c.identity.encoder!r}; this service runs "
                    f"{self.encoder!r}"
                )
            if c.placement and c.placement not in PLACEMENTS:
                raise InvalidInput(
                    f"placement {c.placement!r} of {key!r} is not one of: {', '.join(PLACEMENTS)} (or empty)"
                )
            placements[key] = c.placement
            identities[key] = np.asarray(c.identity.values, dtype=np.float64)
            if c.references:
                references[key] = await self._reference_prints(key, c.references)
        data = await self._image(request.image, "scene image")
        scene = await self.models.run("score_identity", identities, data, references, placements)
        encoder = self.encoder
        matches = []
        for m in scene.matches:
            match = pb.CharacterMatch(character_id=m.character, face_found=m.found)
            if m.found:
                face = scene.faces[m.face_index]
                fp = face_pb(face)
                match.score.CopyFrom(idr_pb(m.raw, m.calibrated, m.verdict, encoder))
                match.box.CopyFrom(fp.box)
                match.face_index = m.face_index
                match.landmarks.extend(fp.landmarks)
                match.face_embedding.CopyFrom(
                    common_pb2.IdentityVector(encoder=encoder, values=face.embedding.tolist())
                )
                match.copy.CopyFrom(copy_pb(m.copy))
            matches.append(match)
        return pb.ScoreIdentityResponse(
            matches=matches,
            faces_detected=scene.face_count,
            no_face=scene.no_face,
            extra_faces=scene.extras,
            bleeds=[pb.IdentityBleed(character_ids=who, face_index=face) for who, face in scene.bleeds],
            placement_swapped=scene.placement_swapped,
        )

    async def CompareImages(self, request: pb.CompareImagesRequest, context) -> pb.CompareImagesResponse:
        a = await self._image(request.a, "image a")
        b = await self._image(request.b, "image b")
        result = await self.models.run("compare_images", a, b)
        return pb.CompareImagesResponse(
            score=idr_pb(result.raw, result.calibrated, result.verdict, self.encoder),
            face_found_a=True,
            face_found_b=True,
            copy=copy_pb(result.copy),
        )

    async def ExtractFrames(self, request: pb.ExtractFramesRequest, context) -> pb.ExtractFramesResponse:
        from services.identity import frames

        data = await refs.fetch_ref(self.store, request.video, "video")
        selection = {
            pb.FRAME_SELECTION_FIRST: "first",
            pb.FRAME_SELECTION_LAST: "last",
            pb.FRAME_SELECTION_EVERY_N_SECONDS: "every",
        }.get(request.selection)
        if selection is None:
            raise InvalidInput("selection is required: FIRST, LAST or EVERY_N_SECONDS")
        if selection == "every" and request.every_s <= 0:
            raise InvalidInput(f"every_s must be > 0 for EVERY_N_SECONDS (got {request.every_s})")
        video = await asyncio.to_thread(frames.extract_frames, data, selection, request.every_s)
        prefix = request.output_prefix.rstrip("/") or f"frames/{hashlib.sha256(data).hexdigest()[:16]}"
        out = []
        for f in video.frames:
            png = await asyncio.to_thread(encode_png, f.pixels)
            ref = await refs.put_image(
                self.store,
                f"{prefix}/frame_{f.index:06d}.png",
                png,
                width=f.pixels.shape[1],
                height=f.pixels.shape[0],
            )
            out.append(pb.VideoFrame(timestamp_s=f.timestamp_s, index=f.index, image=ref))
        return pb.ExtractFramesResponse(frames=out, duration_s=video.duration_s, fps=video.fps)


def build(settings: IdentitySettings) -> ServiceSpec:
    return servicer_spec("identity", pb, pb_grpc, "IdentityService", IdentityServicer(settings))
