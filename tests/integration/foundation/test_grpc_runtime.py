"""The shared gRPC bootstrap with a real grpc.aio server on port 0: health, reflection, error mapping,
deadline propagation and client retries."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from idlock import grpc_client
from idlock.db import let_started_calls_leave
from idlock.errors import NotFound, Unavailable
from idlock.grpc_server import GrpcService, ServiceSpec, remaining_s
from idlock.settings import GrpcServerSettings
from idlock.v1 import identity_service_pb2 as pb
from idlock.v1 import identity_service_pb2_grpc as pb_grpc

SERVICE = "idlock.v1.IdentityService"


class ProbeServicer(pb_grpc.IdentityServiceServicer):
    def __init__(self) -> None:
        self.compare_calls = 0
        #: the client address (ip:port) of each EncodeReferences call
        self.callers: list[str] = []

    async def EncodeReferences(self, request, context):
        self.callers.append(context.peer())
        return pb.EncodeReferencesResponse()

    async def DetectFaces(self, request, context):
        raise NotFound("character char_404 does not exist")

    async def CompareImages(self, request, context):
        self.compare_calls += 1
        if self.compare_calls < 3:
            raise Unavailable("warming up")
        return pb.CompareImagesResponse(face_found_a=True)

    async def ScoreIdentity(self, request, context):
        # what an outgoing call made from here would get as its deadline, in ms
        return pb.ScoreIdentityResponse(faces_detected=int(remaining_s(100.0) * 1000))

    async def ExtractFrames(self, request, context):
        raise RuntimeError("secret internals")


async def _start(servicer: ProbeServicer, startup_gate: asyncio.Event | None = None, **settings):
    async def startup() -> None:
        if startup_gate is not None:
            await startup_gate.wait()

    spec = ServiceSpec(
        component="probe",
        service_names=[SERVICE],
        registrations=[lambda server: pb_grpc.add_IdentityServiceServicer_to_server(servicer, server)],
        on_startup=[startup],
    )
    service = GrpcService(spec, GrpcServerSettings(port=0, grace_s=1.0, **settings))
    task = asyncio.ensure_future(service.start())
    while service.port == 0:
        await asyncio.sleep(0.01)
    return service, task


async def _health(address: str, service: str = "") -> str:
    async with grpc.aio.insecure_channel(address) as ch:
        reply = await health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=2
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


async def test_serving_only_after_startup_and_not_serving_during_shutdown() -> None:
    gate = asyncio.Event()
    service, started = await _start(ProbeServicer(), gate)
    assert await _health(service.address) == "NOT_SERVING"
    assert await _health(service.address, SERVICE) == "NOT_SERVING"
    gate.set()
    await started
    assert await _health(service.address, SERVICE) == "SERVING"

    async with grpc.aio.insecure_channel(service.address) as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(service=SERVICE))
        seen = [(await watch.read()).status]
        stopping = asyncio.ensure_future(service.stop(drain_s=0.5))
        seen.append((await watch.read()).status)
        await stopping
    assert seen == [health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING]


async def test_reflection_lists_the_service() -> None:
    service, started = await _start(ProbeServicer())
    await started
    try:

        def listed() -> list[str]:
            with grpc.insecure_channel(service.address) as ch:
                return ProtoReflectionDescriptorDatabase(ch).get_services()

        names = await asyncio.to_thread(listed)
        assert SERVICE in names and "grpc.health.v1.Health" in names
    finally:
        await service.stop(drain_s=0)


async def test_errors_map_to_status_codes_and_internals_do_not_leak() -> None:
    service, started = await _start(ProbeServicer())
    await started
    try:
        async with grpc_client.channel(service.address, default_timeout_s=5) as ch:
            stub = pb_grpc.IdentityServiceStub(ch)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.DetectFaces(pb.DetectFacesRequest())
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            assert err.value.details() == "character char_404 does not exist"

            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.ExtractFrames(pb.ExtractFramesRequest())
            assert err.value.code() == grpc.StatusCode.INTERNAL
            assert "secret" not in err.value.details() and "request id" in err.value.details()
    finally:
        await service.stop(drain_s=0)


async def test_idempotent_rpcs_are_retried_on_unavailable() -> None:
    servicer = ProbeServicer()
    service, started = await _start(servicer)
    await started
    try:
        async with grpc_client.channel(service.address, default_timeout_s=5) as ch:
            reply = await pb_grpc.IdentityServiceStub(ch).CompareImages(pb.CompareImagesRequest())
        assert reply.face_found_a and servicer.compare_calls == 3

        servicer.compare_calls = 0
        no_retry = {"idlock.v1.IdentityService": []}
        async with grpc_client.channel(service.address, default_timeout_s=5, idempotent=no_retry) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.IdentityServiceStub(ch).CompareImages(pb.CompareImagesRequest())
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE and servicer.compare_calls == 1
    finally:
        await service.stop(drain_s=0)


async def test_every_call_gets_a_deadline_and_the_server_sees_what_is_left() -> None:
    service, started = await _start(ProbeServicer())
    await started
    try:
        async with grpc_client.channel(service.address, default_timeout_s=1.5) as ch:
            reply = await pb_grpc.IdentityServiceStub(ch).ScoreIdentity(pb.ScoreIdentityRequest())
        # the client default (1.5 s) became the RPC deadline; the server's outgoing budget is what remains (the
        # wire encodes the timeout rounded up, and the two clocks are read at different moments: a few ms over)
        assert 0 < reply.faces_detected <= 1550
    finally:
        await service.stop(drain_s=0)


async def test_a_peer_error_becomes_our_domain_error_with_its_status_and_message() -> None:
    from idlock.errors import IdlockError
    from idlock.errors import NotFound as NotFoundError

    service, started = await _start(ProbeServicer())
    await started
    try:
        async with grpc_client.channel(service.address, default_timeout_s=5) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.IdentityServiceStub(ch).DetectFaces(pb.DetectFacesRequest())
        mapped = grpc_client.peer_error(err.value)
        assert type(mapped) is NotFoundError and mapped.message == "character char_404 does not exist"
        prefixed = grpc_client.peer_error(err.value, "identity.DetectFaces")
        assert prefixed.message == "identity.DetectFaces: character char_404 does not exist"
        assert prefixed.details == {"code": "NOT_FOUND", "peer": "identity.DetectFaces"}
    finally:
        await service.stop(drain_s=0)

    class Fake(grpc.aio.AioRpcError):
        def __init__(self, code: grpc.StatusCode) -> None:
            super().__init__(code, None, None, details="boom")

    assert type(grpc_client.peer_error(Fake(grpc.StatusCode.CANCELLED))).__name__ == "Unavailable"
    assert type(grpc_client.peer_error(Fake(grpc.StatusCode.DATA_LOSS))).__name__ == "Unavailable"
    assert type(grpc_client.peer_error(Fake(grpc.StatusCode.DATA_LOSS), default=IdlockError)) is IdlockError


async def test_a_restarted_peer_is_found_again_on_the_same_channel_within_a_second_or_two() -> None:
    servicer = ProbeServicer()
    service, started = await _start(servicer)
    await started
    port = service.port
    async with grpc_client.channel(service.address, default_timeout_s=2) as ch:
        stub = pb_grpc.IdentityServiceStub(ch)
        assert (await stub.ScoreIdentity(pb.ScoreIdentityRequest())).faces_detected > 0
        await service.stop(drain_s=0)
        with pytest.raises(grpc.aio.AioRpcError) as err:  # down: refused at once, no wait
            await stub.ScoreIdentity(pb.ScoreIdentityRequest(), timeout=1)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        # long enough for gRPC's default reconnect backoff to have grown: with it, the peer was found 4.6-7.1 s
        # after its restart (1.2-1.7 s after a 3 s outage, too close to this channel's worst under load)
        await asyncio.sleep(10.0)
        again = GrpcService(service.spec, GrpcServerSettings(port=port, grace_s=1.0))
        await again.start()
        try:
            t0 = asyncio.get_running_loop().time()
            while True:
                try:
                    await stub.ScoreIdentity(pb.ScoreIdentityRequest(), timeout=1)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.05)
            found_after = asyncio.get_running_loop().time() - t0
        finally:
            await again.stop(drain_s=0)
    # the channel waits at most 1 s (+20% jitter) between attempts: 0.25-0.33 s on a quiet machine, 1.56 s seen
    # once in CI under load
    assert found_after < 2.5, f"the restarted peer was found after {found_after:.2f} s"


@pytest.mark.parametrize("balancing", ["round_robin", "pick_first"])
async def test_calls_spread_over_every_address_of_a_service_with_round_robin(
    balancing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a headless Service resolves to every replica: with round_robin (k8s/ sets it) one channel reaches them all
    monkeypatch.setenv("IDLOCK_PEER_BALANCING", balancing)
    first, second = ProbeServicer(), ProbeServicer()
    services = [await _start(first), await _start(second)]
    for _, started in services:
        await started
    target = "ipv4:" + ",".join(f"127.0.0.1:{service.port}" for service, _ in services)
    try:
        async with grpc_client.channel(target, default_timeout_s=5) as ch:
            stub = pb_grpc.IdentityServiceStub(ch)
            for _ in range(20):
                await stub.EncodeReferences(pb.EncodeReferencesRequest())
    finally:
        for service, _ in services:
            await service.stop(drain_s=0)
    calls = (len(first.callers), len(second.callers))
    if balancing == "round_robin":  # over the ready connections: the first calls may go before the second is
        assert sum(calls) == 20 and min(calls) >= 5, calls
    else:  # the default: one address at a time, and a call waits while its connection is made
        assert sorted(calls) == [0, 20], calls


async def test_a_connection_is_renewed_after_its_age_and_no_call_fails() -> None:
    # the client re-resolves and reconnects when the server ends an old connection: it finds replicas added since
    servicer = ProbeServicer()
    service, started = await _start(servicer, max_connection_age_s=0.5)
    await started
    try:
        async with grpc_client.channel(service.address, default_timeout_s=5) as ch:
            stub = pb_grpc.IdentityServiceStub(ch)
            deadline = asyncio.get_running_loop().time() + 2.0
            while asyncio.get_running_loop().time() < deadline:
                await stub.EncodeReferences(pb.EncodeReferencesRequest())
                await asyncio.sleep(0.05)
    finally:
        await service.stop(drain_s=0)
    connections = list(dict.fromkeys(servicer.callers))  # each client port is one connection, in order
    assert len(connections) >= 2, f"one connection served every call: {connections}"


async def test_a_storage_error_keeps_its_type_across_the_mesh() -> None:
    from idlock.errors import StorageFull

    class Full(ProbeServicer):
        async def DetectFaces(self, request, context):
            raise StorageFull(
                "object storage is full: object 'x' could not be written under /data (No space)"
            )

    service, started = await _start(Full())
    await started
    try:
        async with grpc_client.channel(service.address, default_timeout_s=5) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await pb_grpc.IdentityServiceStub(ch).DetectFaces(pb.DetectFacesRequest())
        mapped = grpc_client.peer_error(err.value, "render.RenderImage")
        assert type(mapped) is StorageFull and mapped.reason == "storage_full"
        assert isinstance(mapped, Unavailable) and "storage is full" in mapped.message
    finally:
        await service.stop(drain_s=0)


#: a peer in a process of its own, so it answers while the test's loop is held; it notes when each call arrives
ARRIVALS_PEER = """
import sys, time
from concurrent import futures
import grpc
from idlock.v1 import identity_service_pb2 as pb, identity_service_pb2_grpc as pb_grpc

class Peer(pb_grpc.IdentityServiceServicer):
    def DetectFaces(self, request, context):
        with open(sys.argv[1], "a") as f:
            f.write(f"{time.time()}\\n")
        return pb.DetectFacesResponse()

server = grpc.server(futures.ThreadPoolExecutor(2))
pb_grpc.add_IdentityServiceServicer_to_server(Peer(), server)
print(server.add_insecure_port("127.0.0.1:0"), flush=True)
server.start()
server.wait_for_termination()
"""


@pytest.fixture
def arrivals_peer(tmp_path):
    """(port, file of arrival times) of a peer in a process of its own."""
    arrivals = tmp_path / "arrivals"
    peer = subprocess.Popen(
        [sys.executable, "-c", ARRIVALS_PEER, str(arrivals)], stdout=subprocess.PIPE, text=True
    )
    try:
        yield int(peer.stdout.readline()), arrivals
    finally:
        peer.kill()
        peer.wait()


async def test_a_call_started_before_an_inline_statement_is_sent_before_it_holds_the_loop(
    arrivals_peer,
) -> None:
    """The orchestrator starts memory's read, then claims the job with an inline SQLite statement that holds the
    loop: `let_started_calls_leave` lets the read's request out first, so the peer works during the claim."""
    port, arrivals = arrivals_peer
    async with grpc_client.channel(f"127.0.0.1:{port}", default_timeout_s=5) as ch:
        stub = pb_grpc.IdentityServiceStub(ch)
        await stub.DetectFaces(pb.DetectFacesRequest())  # connected
        for _ in range(5):
            call = asyncio.ensure_future(stub.DetectFaces(pb.DetectFacesRequest()))
            await let_started_calls_leave()
            held_from = time.time()
            time.sleep(0.3)  # noqa: ASYNC251 - the inline statement that holds the loop
            await call
            arrived = float(arrivals.read_text().split()[-1])
            assert arrived < held_from + 0.25, (
                f"the request arrived {arrived - held_from:.3f} s into the hold"
            )
