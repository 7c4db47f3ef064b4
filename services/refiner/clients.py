"""The refiner's peers over gRPC: memory (a character's identity and reference images) and render (EditImage for
the render strategy). A call's deadline is what is left of the caller's, at most the configured timeout; a
peer's status comes back as a domain error."""

from __future__ import annotations

import grpc

from idlock import grpc_client
from idlock.grpc_server import remaining_s
from idlock.settings import MeshSettings
from idlock.v1 import (
    common_pb2,
    memory_service_pb2,
    memory_service_pb2_grpc,
    render_service_pb2,
    render_service_pb2_grpc,
)

#: left of the caller's deadline for storing an edit's result after EditImage answers
EDIT_MARGIN_S = 0.5


class RefinerPeers:
    def __init__(
        self, mesh: MeshSettings, *, max_message_mb: int, memory_timeout_s: float, render_timeout_s: float
    ):
        self.memory_timeout_s = memory_timeout_s
        self.render_timeout_s = render_timeout_s
        self._channels = {
            "memory": grpc_client.channel(
                mesh.memory_addr, max_message_mb=max_message_mb, default_timeout_s=memory_timeout_s
            ),
            "render": grpc_client.channel(
                mesh.render_addr, max_message_mb=max_message_mb, default_timeout_s=render_timeout_s
            ),
        }
        self.memory = memory_service_pb2_grpc.MemoryServiceStub(self._channels["memory"])
        self.render = render_service_pb2_grpc.RenderServiceStub(self._channels["render"])

    async def character(self, character_id: str) -> memory_service_pb2.Character:
        try:
            resp = await self.memory.GetCharacter(
                memory_service_pb2.GetCharacterRequest(character_id=character_id),
                timeout=remaining_s(self.memory_timeout_s),
            )
        except grpc.aio.AioRpcError as e:
            raise grpc_client.peer_error(e, f"character {character_id!r}") from e
        return resp.character

    async def edit_image(self, request: render_service_pb2.EditImageRequest) -> common_pb2.ImageRef:
        timeout = max(0.1, remaining_s(self.render_timeout_s + EDIT_MARGIN_S) - EDIT_MARGIN_S)
        try:
            resp = await self.render.EditImage(request, timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise grpc_client.peer_error(e, "render.EditImage") from e
        return resp.image

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()


__all__ = ["EDIT_MARGIN_S", "RefinerPeers"]
