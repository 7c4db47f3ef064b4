"""EventBus on a real nats-server: streams, de-duplication, redelivery, heartbeats, dead letters, tracing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import nats.js.errors
import pytest
from google.protobuf import struct_pb2, wrappers_pb2
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from idlock import subjects
from idlock.bus import Delivery, EventBus, MessageTypeUnknown, StreamConfigMismatch, decode
from idlock.errors import InvalidInput
from idlock.natsd import NatsServer
from idlock.settings import NatsSettings
from tests.metrics_probe import metrics_change


@pytest.fixture
async def bus(nats_settings: NatsSettings) -> AsyncIterator[EventBus]:
    b = await EventBus.connect(nats_settings, name="test-bus")
    await b.ensure_streams()
    yield b
    await b.close()


@pytest.fixture
async def job_subject(bus: EventBus) -> AsyncIterator[tuple[str, str]]:
    """A job subject and durable of this test's own: a work-queue stream allows one consumer per subject."""
    tag = uuid.uuid4().hex[:10]
    durable = f"test-{tag}"
    yield f"idlock.jobs.test.{tag}", durable
    await bus.delete_consumer(subjects.JOBS_STREAM, durable)


def _v(x: object) -> object:
    return getattr(x, "value", x)


async def wait_for(pred: Callable[[], bool], timeout_s: float = 8.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def wait_for_dead_letters(bus: EventBus, subject: str, n: int = 1, timeout_s: float = 8.0) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await bus.list_dead_letters(subject)
        if len(found) >= n or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.1)


async def test_streams_are_created_with_our_config(bus: EventBus) -> None:
    await bus.ensure_streams()  # second call verifies instead of creating
    jobs = await bus.js.stream_info(subjects.JOBS_STREAM)
    events = await bus.js.stream_info(subjects.EVENTS_STREAM)
    dead = await bus.js.stream_info(subjects.DEADLETTER_STREAM)
    assert _v(jobs.config.retention) == "workqueue"
    assert jobs.config.subjects == ["idlock.jobs.>"]
    assert _v(events.config.retention) == "limits"
    assert events.config.subjects == ["idlock.events.>"]
    assert events.config.max_age == pytest.approx(bus.settings.events_max_age_s)
    assert dead.config.subjects == ["idlock.deadletter.>"]
    for info in (jobs, events, dead):
        assert _v(info.config.storage) == "file"
        assert info.config.duplicate_window == pytest.approx(bus.settings.duplicate_window_s)


async def test_existing_stream_with_other_config_is_refused(tmp_path) -> None:
    with NatsServer(tmp_path / "nats") as server:
        settings = NatsSettings(url=server.url)
        b = await EventBus.connect(settings)
        try:
            await b.js.add_stream(name="JOBS", subjects=["idlock.jobs.>"], retention="limits", storage="file")
            with pytest.raises(StreamConfigMismatch) as err:
                await b.ensure_streams()
            assert err.value.stream == "JOBS"
            assert err.value.field == "retention"
            assert (err.value.expected, err.value.actual) == ("workqueue", "limits")
            assert "JOBS" in str(err.value) and "retention" in str(err.value)

            await b.js.delete_stream("JOBS")
            await b.ensure_streams()
            # a changed setting we own is reported, not silently kept
            changed = NatsSettings(url=server.url, duplicate_window_s=60)
            b2 = EventBus(b.nc, changed)
            with pytest.raises(StreamConfigMismatch) as err2:
                await b2.ensure_streams()
            assert err2.value.field == "duplicate_window"
            assert err2.value.expected == 60 and err2.value.actual == 7200
        finally:
            await b.close()


async def test_decode_round_trip_and_unknown_type() -> None:
    class Raw:
        subject = "idlock.events.x.y"

        def __init__(self, headers, data):
            self.headers, self.data = headers, data

    s = struct_pb2.Struct()
    s.update({"character": "c1", "n": 2})
    assert decode(Raw({"Idlock-Type": "google.protobuf.Struct"}, s.SerializeToString())) == s
    with pytest.raises(MessageTypeUnknown, match="idlock.v1.NoSuchThing"):
        decode(Raw({"Idlock-Type": "idlock.v1.NoSuchThing"}, b""))
    with pytest.raises(MessageTypeUnknown, match="no Idlock-Type header"):
        decode(Raw({}, b""))


async def test_publish_rejects_non_protobuf(bus: EventBus) -> None:
    with pytest.raises(InvalidInput, match="protobuf"):
        await bus.publish(subjects.JOB_QUEUED, {"job": 1})  # type: ignore[arg-type]


async def test_same_msg_id_is_delivered_once(bus: EventBus, job_subject: tuple[str, str]) -> None:
    subject, durable = job_subject
    job_id = f"job-{uuid.uuid4().hex}"
    first = await bus.publish(subject, wrappers_pb2.StringValue(value="render"), msg_id=job_id)
    again = await bus.publish(subject, wrappers_pb2.StringValue(value="render"), msg_id=job_id)
    assert not first.duplicate and again.duplicate and again.seq == first.seq

    seen: list[Delivery] = []

    async def handler(d: Delivery) -> None:
        seen.append(d)

    worker = await bus.consume(subjects.JOBS_STREAM, subject, durable, handler, ack_wait_s=2)
    await wait_for(lambda: len(seen) >= 1)
    await asyncio.sleep(0.5)
    await worker.stop()
    assert len(seen) == 1
    assert seen[0].msg_id == job_id
    assert seen[0].message == wrappers_pb2.StringValue(value="render")
    assert seen[0].headers["Idlock-Type"] == "google.protobuf.StringValue"


async def test_unacked_message_is_redelivered_after_ack_wait(
    bus: EventBus, job_subject: tuple[str, str]
) -> None:
    subject, durable = job_subject
    deliveries: list[tuple[int, float]] = []
    hang = asyncio.Event()

    async def handler(d: Delivery) -> None:
        deliveries.append((d.num_delivered, time.monotonic()))
        if d.num_delivered == 1:
            await hang.wait()  # a stuck worker: never answers

    worker = await bus.consume(subjects.JOBS_STREAM, subject, durable, handler, ack_wait_s=1, concurrency=2)
    await bus.publish(subject, wrappers_pb2.StringValue(value="x"))
    await wait_for(lambda: len(deliveries) >= 2)
    await worker.stop(grace_s=0.1)
    assert [n for n, _ in deliveries] == [1, 2]
    assert deliveries[1][1] - deliveries[0][1] >= 0.9  # not before ack_wait ran out


async def test_heartbeat_extends_the_ack_deadline(bus: EventBus, job_subject: tuple[str, str]) -> None:
    subject, durable = job_subject
    deliveries: list[int] = []
    done = asyncio.Event()

    async def handler(d: Delivery) -> None:
        deliveries.append(d.num_delivered)
        async with d.heartbeat():
            await asyncio.sleep(2.6)  # well past ack_wait
        done.set()

    worker = await bus.consume(subjects.JOBS_STREAM, subject, durable, handler, ack_wait_s=1, concurrency=2)
    await bus.publish(subject, wrappers_pb2.StringValue(value="long render"))
    await asyncio.wait_for(done.wait(), 8)
    await asyncio.sleep(0.3)
    await worker.stop()
    assert deliveries == [1]
    assert worker.stats["ack"] == 1


async def test_failing_handler_lands_in_dead_letters(bus: EventBus, job_subject: tuple[str, str]) -> None:
    subject, durable = job_subject
    attempts: list[int] = []

    async def handler(d: Delivery) -> None:
        attempts.append(d.num_delivered)
        raise RuntimeError(f"render provider exploded on attempt {d.num_delivered}")

    worker = await bus.consume(
        subjects.JOBS_STREAM, subject, durable, handler, ack_wait_s=5, max_deliver=3, backoff_s=[0.1, 0.2]
    )
    job_id = f"job-{uuid.uuid4().hex}"
    payload = struct_pb2.Struct()
    payload.update({"character_id": "c-42", "prompt": "rainy street"})
    with metrics_change() as grew:
        ack = await bus.publish(subject, payload, msg_id=job_id)
        dead = await wait_for_dead_letters(bus, subject)
        await worker.stop()

    assert attempts == [1, 2, 3]
    assert grew("idlock_bus_redeliveries_total", consumer=durable) == 2
    assert grew("idlock_bus_dead_letters_total", consumer=durable) == 1
    assert len(dead) == 1
    rec = dead[0]
    assert rec.subject == subject and rec.stream == "JOBS" and rec.stream_seq == ack.seq
    assert rec.num_delivered == 3 and rec.consumer == durable and rec.msg_id == job_id
    assert "RuntimeError: render provider exploded on attempt 3" in rec.error
    assert rec.dead_subject == "idlock.deadletter." + subject.removeprefix("idlock.")
    assert rec.message() == payload
    # terminated on the work queue: gone from JOBS, not retried
    with pytest.raises(nats.js.errors.NotFoundError):
        await bus.js.get_msg(subjects.JOBS_STREAM, ack.seq)


async def test_worker_crash_on_final_attempt_lands_in_dead_letters(
    bus: EventBus, job_subject: tuple[str, str]
) -> None:
    subject, durable = job_subject
    attempts: list[int] = []
    crash = asyncio.Event()

    async def handler(d: Delivery) -> None:
        attempts.append(d.num_delivered)
        if d.num_delivered == 1:
            raise ConnectionError("identity service unavailable")
        await crash.wait()  # the process "dies": no ack, nak or term ever comes

    worker = await bus.consume(
        subjects.JOBS_STREAM,
        subject,
        durable,
        handler,
        ack_wait_s=1,
        max_deliver=2,
        backoff_s=[0.1],
        concurrency=3,
    )
    ack = await bus.publish(
        subject, wrappers_pb2.StringValue(value="doomed"), msg_id=f"job-{uuid.uuid4().hex}"
    )
    dead = await wait_for_dead_letters(bus, subject, timeout_s=10)
    await worker.stop(grace_s=0.1)

    assert attempts == [1, 2]
    assert len(dead) == 1
    assert dead[0].stream_seq == ack.seq and dead[0].num_delivered == 2
    assert "no answer on final delivery" in dead[0].error
    assert dead[0].message() == wrappers_pb2.StringValue(value="doomed")
    assert worker.stats["advisory_deadletter"] == 1
    with pytest.raises(nats.js.errors.NotFoundError):  # removed from the work queue
        await bus.js.get_msg(subjects.JOBS_STREAM, ack.seq)
    # the record is idempotent per stream sequence
    again = await bus.write_dead_letter(
        subject=subject, stream="JOBS", consumer=durable, stream_seq=ack.seq, num_delivered=2,
        payload=b"", headers={}, error="x",
    )  # fmt: skip
    assert again.duplicate
    assert len(await bus.list_dead_letters(subject)) == 1


async def test_trace_context_travels_in_headers(
    nats_settings: NatsSettings, job_subject: tuple[str, str]
) -> None:
    subject, durable = job_subject
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    b = await EventBus.connect(nats_settings, name="trace-test", tracer_provider=provider)
    got: list[Delivery] = []
    try:
        with provider.get_tracer("test").start_as_current_span("submit job") as root:
            await b.publish(subject, wrappers_pb2.StringValue(value="traced"))
        worker = await b.consume(subjects.JOBS_STREAM, subject, durable, lambda d: _append(got, d))
        await wait_for(lambda: len(got) == 1)
        await worker.stop()
    finally:
        await b.close()

    trace_id = root.get_span_context().trace_id
    assert got[0].headers["traceparent"].split("-")[1] == f"{trace_id:032x}"
    spans = {s.name: s for s in exporter.get_finished_spans()}
    publish, process = spans[f"{subject} publish"], spans[f"{subject} process"]
    assert publish.context.trace_id == process.context.trace_id == trace_id
    assert process.parent is not None and process.parent.span_id == publish.context.span_id


async def _append(into: list, d: Delivery) -> None:
    into.append(d)


async def test_undecodable_message_is_dead_lettered_at_once(
    bus: EventBus, job_subject: tuple[str, str]
) -> None:
    subject, durable = job_subject
    calls: list[Delivery] = []
    worker = await bus.consume(
        subjects.JOBS_STREAM, subject, durable, lambda d: _append(calls, d), max_deliver=5
    )
    ack = await bus.js.publish(subject, b"\x01\x02", headers={"Idlock-Type": "idlock.v1.RetiredJob"})
    dead = await wait_for_dead_letters(bus, subject)
    await worker.stop()
    assert calls == []  # the handler never sees a message it cannot decode
    assert len(dead) == 1 and dead[0].num_delivered == 1 and dead[0].stream_seq == ack.seq
    assert "idlock.v1.RetiredJob" in dead[0].error
    with pytest.raises(MessageTypeUnknown):
        dead[0].message()


def test_nats_port_in_use_names_the_setting(nats_server: NatsServer, tmp_path) -> None:
    from idlock.natsd import NatsPortInUse

    with pytest.raises(NatsPortInUse) as err:
        NatsServer(tmp_path / "second", port=nats_server.port).start()
    assert str(nats_server.port) in str(err.value)
    assert "IDLOCK_NATS_PORT" in str(err.value) and "--nats-port" in str(err.value)


def test_nats_server_that_exits_reports_its_log(tmp_path) -> None:
    from idlock.natsd import NatsServerError

    with pytest.raises(NatsServerError, match="exited with code") as err:
        NatsServer(tmp_path / "bad", extra_args=["--no_such_flag"]).start()
    assert "no_such_flag" in str(err.value)  # the server's own complaint is in the message


async def test_connect_to_an_unreachable_nats_fails_fast_and_names_the_setting() -> None:
    import time

    from idlock.bus import EventBus
    from idlock.errors import Unavailable
    from idlock.natsd import free_port
    from idlock.settings import NatsSettings

    started = time.monotonic()
    with pytest.raises(Unavailable, match="IDLOCK_NATS_URL"):
        await EventBus.connect(NatsSettings(url=f"nats://127.0.0.1:{free_port()}", connect_timeout_s=0.5))
    assert time.monotonic() - started < 5
