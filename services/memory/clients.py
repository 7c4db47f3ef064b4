"""Memory's peers over gRPC: the identity service, which encodes a new character's references. A call's deadline
is what is left of the caller's, at most `identity_timeout_s`; the identity service's verdict (e.g. no face in
reference image 1) reaches the caller as is."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import json_format

from idlock import grpc_client
from idlock.grpc_server import remaining_s
from idlock.v1 import common_pb2
from idlock.v1 import identity_service_pb2 as id_pb
from idlock.v1 import identity_service_pb2_grpc as id_grpc
from services.memory.characters import EncodedReferences


class IdentityClient:
    def __init__(self, addr: str, timeout_s: float) -> None:
        self.addr = addr
        self.timeout_s = timeout_s
        self._channel: grpc.aio.Channel | None = None

    def _stub(self) -> id_grpc.IdentityServiceStub:
        if self._channel is None:
            self._channel = grpc_client.channel(self.addr, default_timeout_s=self.timeout_s)
        return id_grpc.IdentityServiceStub(self._channel)

    async def encode_references(self, images: Sequence[common_pb2.ImageInput]) -> EncodedReferences:
        req = id_pb.EncodeReferencesRequest(images=list(images))
        try:
            res = await self._stub().EncodeReferences(req, timeout=remaining_s(self.timeout_s))
        except grpc.aio.AioRpcError as e:
            transient = e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            where = f"identity service at {self.addr}" if transient else ""
            raise grpc_client.peer_error(e, where) from None
        return EncodedReferences(
            encoder=res.identity.encoder,
            vector=list(res.identity.values),
            views=[list(v.values) for v in res.views],
            quality=[
                json_format.MessageToDict(
                    q, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
                )
                for q in res.quality
            ],
            inconsistent_indices=list(res.inconsistent_indices),
        )

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


__all__ = ["IdentityClient"]
