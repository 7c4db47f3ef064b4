"""The trainer's peers over gRPC. A call's deadline is what is left of the caller's (an RPC, or a training job's
step), at most the mesh default; a peer's status comes back as a domain error."""

from __future__ import annotations

import logging

import grpc

from idlock import errors, grpc_client
from idlock.settings import MeshSettings
from idlock.v1 import common_pb2, memory_service_pb2, memory_service_pb2_grpc

log = logging.getLogger("idlock.trainer")


class MemoryClient:
    """Memory, for the identity a new LoRA's renders are scored against and the prompts of golden images' scenes.
    The channel opens on first use."""

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

    async def prompts(self, character_id: str, job_ids: set[str]) -> dict[str, str]:
        """Each of `job_ids`' scene prompt, from the character's history (events carry no prompts), newest page
        first. The prompts are metadata: without memory, what was found so far, and a warning."""
        found: dict[str, str] = {}
        token = ""
        while job_ids - found.keys():
            try:
                resp = await self._stub().ListHistory(
                    memory_service_pb2.ListHistoryRequest(
                        character_id=character_id,
                        page=common_pb2.PageRequest(page_size=100, page_token=token),
                    )
                )
            except grpc.aio.AioRpcError as e:
                err = grpc_client.peer_error(e, "memory.ListHistory", default=errors.Unavailable)
                log.warning("scene prompts of %s left out: %s", character_id, err.message)
                break
            found.update({ep.job_id: ep.prompt for ep in resp.episodes if ep.job_id in job_ids})
            token = resp.next_page_token
            if not token:
                break
        return found

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


__all__ = ["MemoryClient"]
