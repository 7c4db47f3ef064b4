"""The orchestrator's peers over gRPC: memory, render, identity. Every call has an explicit deadline, and a
peer's status code comes back as the matching domain error (so the flow and the servicer never see grpc)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from idlock import errors, grpc_client
from idlock.settings import MeshSettings
from idlock.v1 import (
    common_pb2,
    identity_service_pb2,
    identity_service_pb2_grpc,
    memory_service_pb2,
    memory_service_pb2_grpc,
    refiner_service_pb2,
    refiner_service_pb2_grpc,
    render_service_pb2,
    render_service_pb2_grpc,
)


def domain_error(err: grpc.aio.AioRpcError, peer: str, rpc: str) -> errors.IdlockError:
    # an unknown code from a peer is a bug there, not a transient fault: do not retry it
    return grpc_client.peer_error(err, f"{peer}.{rpc}", default=errors.IdlockError)


class GrpcPeers:
    """The calls the generation flow makes, over one channel per peer."""

    def __init__(self, mesh: MeshSettings) -> None:
        self.mesh = mesh
        self._channels = {
            "memory": grpc_client.channel(mesh.memory_addr, default_timeout_s=mesh.rpc_timeout_s),
            "render": grpc_client.channel(mesh.render_addr, default_timeout_s=mesh.rpc_timeout_s),
            "identity": grpc_client.channel(mesh.identity_addr, default_timeout_s=mesh.rpc_timeout_s),
        }
        self.memory = memory_service_pb2_grpc.MemoryServiceStub(self._channels["memory"])
        self.render = render_service_pb2_grpc.RenderServiceStub(self._channels["render"])
        self.identity = identity_service_pb2_grpc.IdentityServiceStub(self._channels["identity"])

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()

    async def get_character(
        self, character_id: str, owner_id: str, *, timeout_s: float
    ) -> memory_service_pb2.Character:
        try:
            resp = await self.memory.GetCharacter(
                memory_service_pb2.GetCharacterRequest(character_id=character_id, owner_id=owner_id),
                timeout=timeout_s,
            )
        except grpc.aio.AioRpcError as e:
            raise domain_error(e, "memory", "GetCharacter") from e
        return resp.character

    async def build_context(
        self,
        character_id: str,
        owner_id: str,
        prompt: str,
        style_overrides: Sequence[str],
        *,
        timeout_s: float,
    ) -> memory_service_pb2.BuildContextResponse:
        try:
            return await self.memory.BuildContext(
                memory_service_pb2.BuildContextRequest(
                    character_id=character_id,
                    owner_id=owner_id,
                    user_prompt=prompt,
                    style_overrides=list(style_overrides),
                ),
                timeout=timeout_s,
            )
        except grpc.aio.AioRpcError as e:
            raise domain_error(e, "memory", "BuildContext") from e

    async def build_scene_context(
        self, request: memory_service_pb2.BuildSceneContextRequest, *, timeout_s: float
    ) -> memory_service_pb2.BuildSceneContextResponse:
        try:
            return await self.memory.BuildSceneContext(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as e:
            raise domain_error(e, "memory", "BuildSceneContext") from e

    async def score_cast(
        self, request: identity_service_pb2.ScoreIdentityRequest, *, timeout_s: float
    ) -> identity_service_pb2.ScoreIdentityResponse:
        try:
            return await self.identity.ScoreIdentity(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as e:
            raise domain_error(e, "identity", "ScoreIdentity") from e

    async def render_image(
        self, request: render_service_pb2.RenderImageRequest, *, timeout_s: float
    ) -> render_service_pb2.RenderImageResponse:
        try:
            return await self.render.RenderImage(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as e:
            raise domain_error(e, "render", "RenderImage") from e

    async def score_identity(
        self,
        character_id: str,
        identity: common_pb2.IdentityVector,
        image: common_pb2.ImageRef,
        *,
        references: Sequence[common_pb2.ImageRef] = (),
        timeout_s: float,
    ) -> identity_service_pb2.ScoreIdentityResponse:
        character = identity_service_pb2.CharacterIdentity(
            character_id=character_id,
            identity=identity,
            references=[common_pb2.ImageInput(ref=r) for r in references],
        )
        try:
            return await self.identity.ScoreIdentity(
                identity_service_pb2.ScoreIdentityRequest(
                    characters=[character],
                    image=common_pb2.ImageInput(ref=image),
                ),
                timeout=timeout_s,
            )
        except grpc.aio.AioRpcError as e:
            raise domain_error(e, "identity", "ScoreIdentity") from e

    async def record_episode(
        self, episode: memory_service_pb2.Episode, *, timeout_s: float
    ) -> memory_service_pb2.RecordEpisodeResponse:
        try:
            return await self.memory.RecordEpisode(
                memory_service_pb2.RecordEpisodeRequest(episode=episode), timeout=timeout_s
            )
        except grpc.aio.AioRpcError as e:
            raise domain_error(e, "memory", "RecordEpisode") from e

    async def refine_image(
        self, request: refiner_service_pb2.RefineRequest, *, timeout_s: float
    ) -> refiner_service_pb2.RefineResponse:
        """Repair a drifted face (refiner service, MeshSettings.refiner_addr; its channel opens on first use)."""
        if "refiner" not in self._channels:
            self._channels["refiner"] = grpc_client.channel(
                self.mesh.refiner_addr, default_timeout_s=self.mesh.rpc_timeout_s
            )
        stub = refiner_service_pb2_grpc.RefinerServiceStub(self._channels["refiner"])
        try:
            return await stub.Refine(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as e:
            raise domain_error(e, "refiner", "Refine") from e

    async def render_video(
        self, request: render_service_pb2.RenderVideoRequest, *, timeout_s: float
    ) -> render_service_pb2.RenderVideoResponse:
        try:
            return await self.render.RenderVideo(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as e:
            raise domain_error(e, "render", "RenderVideo") from e

    async def extract_frames(
        self, request: identity_service_pb2.ExtractFramesRequest, *, timeout_s: float
    ) -> identity_service_pb2.ExtractFramesResponse:
        try:
            return await self.identity.ExtractFrames(request, timeout=timeout_s)
        except grpc.aio.AioRpcError as e:
            raise domain_error(e, "identity", "ExtractFrames") from e
