"""The mesh refuses callers without a valid service token, keeps health open for probes, and never reads an empty
owner as "any owner" for the gateway (memory over gRPC, a real server)."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from idlock import mesh_auth
from idlock.mesh_auth import MeshAuth, MeshAuthSettings, resolve_key
from idlock.v1 import memory_service_pb2 as pb
from idlock.v1 import memory_service_pb2_grpc as pb_grpc
from tests.harness import serving


def _as(component: str) -> list[tuple[str, str]]:
    key = resolve_key(MeshAuthSettings(), ".")
    return [(mesh_auth.METADATA_KEY, MeshAuth(component, key).token())]


async def test_calls_need_a_token_and_the_gateway_always_names_an_owner(tmp_path, nats_server) -> None:
    async with (
        serving("memory", tmp_path, IDLOCK_NATS_URL=nats_server.url) as memory,
        grpc.aio.insecure_channel(memory.address) as ch,  # no interceptor: nothing added
    ):
        stub = pb_grpc.MemoryServiceStub(ch)
        get = pb.GetCharacterRequest(character_id="char_someone_elses", owner_id="")
        for metadata in (None, [(mesh_auth.METADATA_KEY, "gateway.9999999999.forged")]):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetCharacter(get, metadata=metadata)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "service token" in err.value.details()
        other_mesh = [(mesh_auth.METADATA_KEY, MeshAuth("gateway", b"o" * 40).token())]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.DeleteCharacter(pb.DeleteCharacterRequest(character_id="c"), metadata=other_mesh)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # probes need no token
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING

        # the gateway acts for a user: an empty owner is an error, never every owner
        for call, request in (
            (stub.GetCharacter, get),
            (stub.DeleteCharacter, pb.DeleteCharacterRequest(character_id="c")),
            (stub.ListCharacters, pb.ListCharactersRequest()),
            (stub.GetCurrentState, pb.GetCurrentStateRequest(character_id="c")),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call(request, metadata=_as("gateway"))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, call
            assert "owner_id is required" in err.value.details()
        # an internal service acting for the system may leave it empty (here: no such character)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetCharacter(get, metadata=_as("refiner"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        listed = await stub.ListCharacters(
            pb.ListCharactersRequest(owner_id="usr_1"), metadata=_as("gateway")
        )
        assert list(listed.characters) == []
