"""The render service's peers over gRPC: the trainer, asked for a character's active LoRA (auto-deployment). Its
deadline is short and its own: past it the render goes on without a LoRA (and says so)."""

from __future__ import annotations

import grpc

from idlock import grpc_client
from idlock.v1 import common_pb2, trainer_service_pb2, trainer_service_pb2_grpc

#: deadline of the GetActiveLora call to the trainer
ACTIVE_LORA_TIMEOUT_S = 2.0


class TrainerClient:
    def __init__(self, addr: str, timeout_s: float = ACTIVE_LORA_TIMEOUT_S) -> None:
        self.addr = addr
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None

    async def active_lora(self, character_id: str) -> common_pb2.LoraRef | None:
        """The character's active LoRA weights, None when it has none; a domain error when the trainer fails."""
        if self._channel is None:
            self._channel = grpc_client.channel(self.addr, default_timeout_s=self.timeout_s)
        stub = trainer_service_pb2_grpc.TrainerServiceStub(self._channel)
        try:
            resp = await stub.GetActiveLora(
                trainer_service_pb2.GetActiveLoraRequest(character_id=character_id), timeout=self.timeout_s
            )
        except grpc.aio.AioRpcError as e:
            raise grpc_client.peer_error(e, "trainer.GetActiveLora") from e
        if not resp.HasField("lora") or not resp.lora.file.uri:
            return None
        return resp.lora.file

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


__all__ = ["ACTIVE_LORA_TIMEOUT_S", "TrainerClient"]
