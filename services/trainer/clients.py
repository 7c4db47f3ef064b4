"""The trainer's peers over gRPC. A call's deadline is what is left of the caller's (an RPC, or a training job's
step), at most the mesh default; a peer's status comes back as a domain error."""

from __future__ import annotations

import grpc

from idlock import errors, grpc_client
from idlock.settings import MeshSettings
from idlock.v1 import common_pb2, memory_service_pb2, memory_service_pb2_grpc


class MemoryClient:
    """Memory, for the identity a new LoRA's renders are scored against. The channel opens on first use."""

    def __init__(self, mesh: MeshSettings) -> None:
        self.mesh = mesh
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> memory_service_pb2_grpc.MemoryServiceStub:
        if self._channel is None:
            self._channel = grpc_client.channel(
                self.mesh.memory_addr, default_timeout_s=self.mesh.rpc_timeout_s
            )
        return memory_service_pb2_grpc.MemoryServiceStub(self._channel)

    async def identity(self, character_id: str) -> common_pb2.IdentityVector:
        try:
            resp = await self._stub().GetCharacter(
                memory_service_pb2.GetCharacterRequest(character_id=character_id)
            )
        except grpc.aio.AioRpcError as e:
            raise grpc_client.peer_error(e, "memory.GetCharacter", default=errors.Unavailable) from e
        return resp.character.identity

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


__all__ = ["MemoryClient"]
