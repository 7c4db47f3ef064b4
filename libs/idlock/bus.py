"""EventBus: protobuf messages over NATS JetStream, with durable pull workers and a dead-letter record.

Publishing: each message carries its protobuf type in `Idlock-Type`, an optional `Nats-Msg-Id` (JetStream
drops a second publish with the same id inside the duplicate window) and the caller's trace context.

Consuming: `consume()` runs a durable pull consumer with explicit acks. A handler that returns acks the
message; one that raises gets it redelivered after the backoff delay for that attempt; the last allowed
attempt is written to the DEADLETTER stream and terminated. A worker that dies on its last attempt never
answers, so the server's MAX_DELIVERIES advisory triggers the same dead-letter write (idempotent: its
Nats-Msg-Id is derived from stream+seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import nats
import nats.errors
import nats.js.errors
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api as js_api
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from idlock import subjects
from idlock.errors import InvalidInput, PreconditionFailed, Unavailable
from idlock.settings import NatsSettings

log = logging.getLogger("idlock.bus")

TYPE_HEADER = "Idlock-Type"
MSG_ID_HEADER = "Nats-Msg-Id"
# dead-letter record headers (the original headers are kept beside them)
DL_SUBJECT = "Idlock-Dead-Subject"
DL_STREAM = "Idlock-Dead-Stream"
DL_SEQ = "Idlock-Dead-Seq"
DL_DELIVERIES = "Idlock-Dead-Deliveries"
DL_ERROR = "Idlock-Dead-Error"
DL_CONSUMER = "Idlock-Dead-Consumer"
DL_MSG_ID = "Idlock-Dead-Msg-Id"

_MAX_HEADER_VALUE = 2000


class StreamConfigMismatch(PreconditionFailed):
    """An existing stream's configuration differs from what IDLock needs on a setting it owns."""

    def __init__(
        self, stream: str, field_name: str, expected: Any, actual: Any, *, others: list[str]
    ) -> None:
        more = f" (also: {'; '.join(others)})" if others else ""
        super().__init__(
            f"stream {stream} exists with {field_name}={actual!r} but IDLock expects "
            f"{field_name}={expected!r}{more}; fix the IDLOCK_NATS_* settings or migrate/delete the stream",
            details={"stream": stream, "field": field_name, "expected": expected, "actual": actual},
        )
        self.stream = stream
        self.field = field_name
        self.expected = expected
        self.actual = actual


class MessageTypeUnknown(InvalidInput):
    """A message whose `Idlock-Type` header is missing or names no protobuf type known to this process."""


def _header_value(text: str) -> str:
    """Header values are single lines; long error texts are cut."""
    flat = " | ".join(line.strip() for line in str(text).splitlines() if line.strip())
    return flat[:_MAX_HEADER_VALUE]


def message_class(full_name: str) -> type[Message]:
    """The generated class for a protobuf full name, looked up in the default descriptor pool."""
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        raise MessageTypeUnknown(
            f"protobuf type {full_name!r} is not known to this process (is its *_pb2 module imported?)",
            details={"type": full_name},
        ) from None
    return message_factory.GetMessageClass(descriptor)


def decode(msg: Any) -> Message:
    """Decode a NATS message (or a stored stream message) into its protobuf message via the type header."""
    headers = getattr(msg, "headers", None) or {}
    type_name = headers.get(TYPE_HEADER)
    subject = getattr(msg, "subject", "?")
    if not type_name:
        raise MessageTypeUnknown(f"message on {subject} has no {TYPE_HEADER} header; cannot decode it")
    cls = message_class(type_name)
    out = cls()
    try:
        out.ParseFromString(getattr(msg, "data", None) or b"")
    except DecodeError as e:
        raise InvalidInput(f"message on {subject} is not a valid {type_name}: {e}") from e
    return out


# --- streams -----------------------------------------------------------------------------------------------


def _stream_configs(settings: NatsSettings) -> list[js_api.StreamConfig]:
    out = []
    for spec in (subjects.JOBS, subjects.EVENTS, subjects.DEADLETTER):
        max_age = float(settings.events_max_age_s) if spec is subjects.EVENTS else (spec.max_age_s or 0.0)
        dup = float(settings.duplicate_window_s)
        if max_age:
            dup = min(dup, max_age)  # JetStream refuses a duplicate window longer than max_age
        out.append(
            js_api.StreamConfig(
                name=spec.name,
                subjects=list(spec.subjects),
                retention=(
                    js_api.RetentionPolicy.WORK_QUEUE
                    if spec.retention == "workqueue"
                    else js_api.RetentionPolicy.LIMITS
                ),
                storage=js_api.StorageType.FILE,
                num_replicas=settings.stream_replicas,
                duplicate_window=dup,
                max_age=max_age,
            )
        )
    return out


def _enum_value(v: Any) -> Any:
    return getattr(v, "value", v)


def _mismatches(want: js_api.StreamConfig, have: js_api.StreamConfig) -> list[tuple[str, Any, Any]]:
    out: list[tuple[str, Any, Any]] = []
    pairs = [
        ("retention", _enum_value(want.retention), _enum_value(have.retention)),
        ("storage", _enum_value(want.storage), _enum_value(have.storage)),
        ("subjects", sorted(want.subjects or []), sorted(have.subjects or [])),
        ("num_replicas", want.num_replicas or 1, have.num_replicas or 1),
    ]
    for name, a, b in pairs:
        if a != b:
            out.append((name, a, b))
    for name, a, b in (
        ("duplicate_window", want.duplicate_window or 0.0, have.duplicate_window or 0.0),
        ("max_age", want.max_age or 0.0, have.max_age or 0.0),
    ):
        if not math.isclose(a, b, abs_tol=1e-3):
            out.append((name, a, b))
    return out


# --- deliveries --------------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """One delivery of a JetStream message to a handler. Settle it once: ack, nak or term."""

    message: Message
    headers: dict[str, str]
    subject: str
    stream: str
    consumer: str
    stream_seq: int
    num_delivered: int
    msg_id: str | None
    trace_context: otel_context.Context
    span: trace.Span
    _msg: Msg = field(repr=False)
    _nc: NatsClient = field(repr=False)
    _ack_wait_s: float = field(repr=False)
    settled: str | None = None  # "ack" | "nak" | "term" once settled

    async def ack(self) -> None:
        """Ack and wait for the server to confirm it, so a confirmed ack is never redelivered."""
        await self._msg.ack_sync(timeout=5.0)
        self.settled = "ack"

    async def nak(self, delay_s: float | None = None) -> None:
        await self._msg.nak(delay=delay_s)
        self.settled = "nak"

    async def in_progress(self) -> None:
        """Reset the ack deadline: the server waits another ack_wait before redelivering."""
        await self._msg.in_progress()

    async def term(self, reason: str = "") -> None:
        """Stop redelivery for good; the reason shows up in the server's termination advisory."""
        payload = b"+TERM" + ((" " + _header_value(reason)).encode() if reason else b"")
        await self._nc.publish(self._msg.reply, payload)
        await self._nc.flush()
        self.settled = "term"

    @contextlib.asynccontextmanager
    async def heartbeat(self, interval_s: float | None = None) -> AsyncIterator[None]:
        """Send in_progress() every ack_wait/3 while the block runs (a long render or a training step)."""
        interval = interval_s or max(self._ack_wait_s / 3.0, 0.05)

        async def beat() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.in_progress()
                except Exception as e:  # noqa: BLE001 - a missed beat is retried next interval
                    log.warning(
                        "in_progress heartbeat failed for %s seq %s: %s", self.subject, self.stream_seq, e
                    )

        task = asyncio.create_task(beat(), name=f"heartbeat-{self.stream}-{self.stream_seq}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


Handler = Callable[[Delivery], Awaitable[None]]


@dataclass
class DeadLetter:
    """A dead-letter record read back from the DEADLETTER stream."""

    dead_subject: str
    dead_seq: int
    subject: str
    stream: str
    stream_seq: int
    num_delivered: int
    error: str
    consumer: str
    msg_id: str | None
    headers: dict[str, str]
    payload: bytes
    time: dt.datetime | None

    @property
    def type_name(self) -> str | None:
        return self.headers.get(TYPE_HEADER)

    def message(self) -> Message:
        return decode(_Raw(self.subject, self.headers, self.payload))


@dataclass
class _Raw:
    subject: str
    headers: dict[str, str]
    data: bytes


class Worker:
    """A running durable pull consumer; `stop()` lets in-flight handlers finish (up to a grace period)."""

    def __init__(
        self,
        bus: EventBus,
        *,
        stream: str,
        subject: str,
        durable: str,
        handler: Handler,
        ack_wait_s: float,
        max_deliver: int,
        backoff_s: Sequence[float],
        concurrency: int,
        fetch_timeout_s: float,
        work_queue: bool,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.subject = subject
        self.durable = durable
        self.handler = handler
        self.ack_wait_s = ack_wait_s
        self.max_deliver = max_deliver
        self.backoff_s = list(backoff_s)
        self.concurrency = concurrency
        self.fetch_timeout_s = fetch_timeout_s
        self.work_queue = work_queue
        self._sub: Any = None
        self._advisory_sub: Any = None
        self._loops: list[asyncio.Task[None]] = []
        self._fetching: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        #: deliveries handled, by outcome; useful to tests and metrics
        self.stats: dict[str, int] = {
            "ack": 0,
            "nak": 0,
            "term": 0,
            "deadletter": 0,
            "advisory_deadletter": 0,
        }

    async def _start(self) -> None:
        js = self.bus.js
        self._sub = await js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        advisory = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.{self.durable}"
        # a queue group: with several replicas of a worker only one handles each advisory
        self._advisory_sub = await self.bus.nc.subscribe(
            advisory, queue=f"idlock-deadletter-{self.durable}", cb=self._on_max_deliveries
        )
        for i in range(self.concurrency):
            self._loops.append(asyncio.create_task(self._loop(), name=f"worker-{self.durable}-{i}"))

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            fetch = asyncio.ensure_future(self._sub.fetch(1, timeout=self.fetch_timeout_s))
            self._fetching.add(fetch)  # type: ignore[arg-type]
            try:
                msgs = await fetch
            except asyncio.CancelledError:
                if self._stopping.is_set():
                    return
                raise
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except Exception as e:  # noqa: BLE001 - connection trouble: the client reconnects
                if self._stopping.is_set():
                    return
                log.warning("fetch on %s/%s failed: %s", self.stream, self.durable, e)
                await asyncio.sleep(0.5)
                continue
            finally:
                self._fetching.discard(fetch)  # type: ignore[arg-type]
            for msg in msgs:
                try:
                    await self._handle(msg)
                except Exception:  # keep the loop alive; an unsettled message comes back after ack_wait
                    log.exception("handling %s on %s/%s failed", msg.subject, self.stream, self.durable)

    def _backoff(self, num_delivered: int) -> float | None:
        if not self.backoff_s:
            return None
        return self.backoff_s[min(num_delivered - 1, len(self.backoff_s) - 1)]

    def _last_attempt(self, num_delivered: int) -> bool:
        return self.max_deliver > 0 and num_delivered >= self.max_deliver

    async def _handle(self, msg: Msg) -> None:
        md = msg.metadata
        headers = dict(msg.headers or {})
        parent = propagate.extract(headers)
        seq = md.sequence.stream
        n = md.num_delivered
        with self.bus.tracer.start_as_current_span(
            f"{msg.subject} process",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": msg.subject,
                "messaging.consumer.group.name": self.durable,
                "messaging.message.id": headers.get(MSG_ID_HEADER, ""),
                "messaging.nats.stream_seq": seq,
                "messaging.nats.num_delivered": n,
            },
        ) as span:
            try:
                message = decode(msg)
            except InvalidInput as e:
                # a poison message never decodes: retrying cannot help
                span.record_exception(e)
                span.set_status(Status(StatusCode.ERROR, str(e)))
                await self._dead_letter_and_term(msg, headers, seq, n, f"undecodable: {e.message}")
                return
            delivery = Delivery(
                message=message,
                headers=headers,
                subject=msg.subject,
                stream=md.stream,
                consumer=md.consumer,
                stream_seq=seq,
                num_delivered=n,
                msg_id=headers.get(MSG_ID_HEADER),
                trace_context=parent,
                span=span,
                _msg=msg,
                _nc=self.bus.nc,
                _ack_wait_s=self.ack_wait_s,
            )
            try:
                await self.handler(delivery)
            except asyncio.CancelledError:
                if not delivery.settled:  # stopping: hand it back at once instead of waiting out ack_wait
                    with contextlib.suppress(Exception):
                        await asyncio.shield(msg.nak())
                raise
            except Exception as e:  # noqa: BLE001
                span.record_exception(e)
                span.set_status(Status(StatusCode.ERROR, str(e)))
                if delivery.settled:
                    log.warning(
                        "handler for %s raised after settling (%s): %s", msg.subject, delivery.settled, e
                    )
                    return
                error = f"{type(e).__name__}: {e}"
                if self._last_attempt(n):
                    log.error("%s seq %s failed on final delivery %d: %s", msg.subject, seq, n, error)
                    await self._dead_letter_and_term(msg, headers, seq, n, error)
                else:
                    delay = self._backoff(n)
                    log.warning(
                        "%s seq %s failed (delivery %d), retry in %ss: %s", msg.subject, seq, n, delay, error
                    )
                    try:
                        await delivery.nak(delay)
                        self.stats["nak"] += 1
                    except Exception as nak_err:  # noqa: BLE001 - redelivered after ack_wait anyway
                        log.warning("nak failed for %s seq %s: %s", msg.subject, seq, nak_err)
                return
            if not delivery.settled:
                try:
                    await delivery.ack()
                except Exception as e:  # noqa: BLE001 - unconfirmed: it may come again; handlers are idempotent
                    log.warning("ack failed for %s seq %s: %s", msg.subject, seq, e)
                    return
            if delivery.settled in self.stats:
                self.stats[delivery.settled] += 1

    async def _dead_letter_and_term(
        self, msg: Msg, headers: dict[str, str], seq: int, n: int, error: str
    ) -> None:
        try:
            await self.bus.write_dead_letter(
                subject=msg.subject,
                stream=self.stream,
                consumer=self.durable,
                stream_seq=seq,
                num_delivered=n,
                payload=msg.data or b"",
                headers=headers,
                error=error,
            )
        except Exception as e:  # noqa: BLE001
            # never term without a record: left unsettled, the MAX_DELIVERIES advisory path retries the write
            log.error(
                "dead-letter write for %s seq %s failed, leaving it to the advisory: %s", msg.subject, seq, e
            )
            return
        self.stats["deadletter"] += 1
        await self.bus.nc.publish(msg.reply, b"+TERM " + _header_value(error).encode()[:_MAX_HEADER_VALUE])
        await self.bus.nc.flush()
        self.stats["term"] += 1

    async def _on_max_deliveries(self, advisory: Msg) -> None:
        """The server gave up on a message nobody settled (a worker crashed or hung on its last attempt)."""
        try:
            info = json.loads(advisory.data)
            seq = int(info["stream_seq"])
            deliveries = int(info.get("deliveries", self.max_deliver))
        except (ValueError, KeyError, TypeError) as e:
            log.error("unreadable MAX_DELIVERIES advisory on %s: %s", advisory.subject, e)
            return
        try:
            raw = await self.bus.js.get_msg(self.stream, seq)
        except nats.js.errors.NotFoundError:
            return  # already settled or removed: the handler path wrote the record
        except Exception as e:  # noqa: BLE001
            log.error("cannot read %s seq %s for dead-lettering: %s", self.stream, seq, e)
            return
        error = (
            f"no answer on final delivery {deliveries}/{self.max_deliver} within ack_wait {self.ack_wait_s}s "
            "(worker crashed, hung or lost its connection)"
        )
        try:
            await self.bus.write_dead_letter(
                subject=raw.subject or self.subject,
                stream=self.stream,
                consumer=self.durable,
                stream_seq=seq,
                num_delivered=deliveries,
                payload=raw.data or b"",
                headers=dict(raw.headers or {}),
                error=error,
            )
            self.stats["advisory_deadletter"] += 1
            if self.work_queue:  # on a limits stream other consumers still want the message
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await self.bus.js.delete_msg(self.stream, seq)
        except Exception as e:  # noqa: BLE001
            log.error("dead-letter write for %s seq %s failed: %s", self.stream, seq, e)

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop fetching, give running handlers `grace_s` to finish, then unsubscribe (the durable stays)."""
        self._stopping.set()
        for f in list(self._fetching):
            f.cancel()
        if self._loops:
            _done, pending = await asyncio.wait(self._loops, timeout=grace_s)
            for t in pending:
                t.cancel()
            await asyncio.gather(*self._loops, return_exceptions=True)
            self._loops.clear()
        for sub in (self._sub, self._advisory_sub):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        self._sub = self._advisory_sub = None
        if self in self.bus._workers:
            self.bus._workers.remove(self)


# --- the bus -----------------------------------------------------------------------------------------------


class EventBus:
    def __init__(
        self, nc: NatsClient, settings: NatsSettings, tracer_provider: trace.TracerProvider | None = None
    ) -> None:
        self.nc = nc
        self.settings = settings
        self.js = nc.jetstream(timeout=max(settings.connect_timeout_s, 5.0))
        self.tracer = trace.get_tracer("idlock.bus", tracer_provider=tracer_provider)
        self._workers: list[Worker] = []

    @classmethod
    async def connect(
        cls,
        settings: NatsSettings,
        name: str = "idlock",
        *,
        tracer_provider: trace.TracerProvider | None = None,
    ) -> EventBus:
        servers = [u.strip() for u in settings.url.split(",") if u.strip()]

        async def _on_error(e: Exception) -> None:
            log.warning("NATS client %s: %s", name, e)

        try:
            # nats-py applies the unbounded reconnect policy to the first connection too: bound that one here
            nc = await asyncio.wait_for(
                nats.connect(
                    servers=servers,
                    name=name,
                    connect_timeout=settings.connect_timeout_s,
                    max_reconnect_attempts=-1,
                    error_cb=_on_error,
                ),
                timeout=settings.connect_timeout_s * len(servers) + 1.0,
            )
        except (TimeoutError, OSError, nats.errors.Error) as e:
            raise Unavailable(
                f"cannot connect to NATS at {settings.url} (IDLOCK_NATS_URL): {type(e).__name__}: {e}",
                details={"url": settings.url},
            ) from e
        return cls(nc, settings, tracer_provider)

    async def close(self) -> None:
        for w in list(self._workers):
            await w.stop()
        self._workers.clear()
        if not self.nc.is_closed:
            await self.nc.drain()

    async def ensure_streams(self) -> None:
        """Create JOBS, EVENTS and DEADLETTER, or verify the existing ones match our settings."""
        for cfg in _stream_configs(self.settings):
            try:
                info = await self.js.stream_info(cfg.name)
            except nats.js.errors.NotFoundError:
                try:
                    await self.js.add_stream(cfg)
                    log.info("created stream %s (%s)", cfg.name, cfg.subjects)
                    continue
                except nats.js.errors.BadRequestError:
                    info = await self.js.stream_info(cfg.name)  # created by a concurrent starter
            diffs = _mismatches(cfg, info.config)
            if diffs:
                first, *rest = diffs
                raise StreamConfigMismatch(
                    cfg.name, *first, others=[f"{f}: expected {e!r}, actual {a!r}" for f, e, a in rest]
                )

    async def publish(
        self,
        subject: str,
        message: Message,
        *,
        msg_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> js_api.PubAck:
        """Publish a protobuf message to JetStream; `PubAck.duplicate` is true when msg_id was seen before."""
        if not isinstance(message, Message):
            raise InvalidInput(f"publish to {subject} needs a protobuf message, got {type(message).__name__}")
        hdrs: dict[str, str] = dict(headers or {})
        hdrs[TYPE_HEADER] = message.DESCRIPTOR.full_name
        if msg_id is not None:
            if not msg_id:
                raise InvalidInput(f"publish to {subject}: msg_id must not be empty")
            hdrs[MSG_ID_HEADER] = msg_id
        with self.tracer.start_as_current_span(
            f"{subject} publish",
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "nats", "messaging.destination.name": subject},
        ):
            propagate.inject(hdrs)
            try:
                return await self.js.publish(
                    subject, message.SerializeToString(), headers=hdrs, timeout=timeout_s
                )
            except nats.js.errors.NoStreamResponseError as e:
                raise Unavailable(
                    f"no JetStream stream accepts subject {subject}; run ensure_streams() first"
                ) from e
            except (TimeoutError, nats.errors.TimeoutError) as e:
                raise Unavailable(f"JetStream did not acknowledge a publish to {subject} in time") from e

    async def consume(
        self,
        stream: str,
        subject: str,
        durable: str,
        handler: Handler,
        *,
        ack_wait_s: float = 30.0,
        max_deliver: int = 5,
        backoff_s: Sequence[float] = (1.0, 5.0, 30.0),
        concurrency: int = 1,
        fetch_timeout_s: float = 1.0,
        max_ack_pending: int | None = None,
    ) -> Worker:
        """Create or update the durable pull consumer `durable` on `stream` filtered to `subject` and start
        `concurrency` fetch loops calling `handler` for each delivery."""
        if concurrency < 1:
            raise InvalidInput(f"consumer {durable}: concurrency must be at least 1, got {concurrency}")
        if max_deliver == 0 or max_deliver < -1:
            raise InvalidInput(
                f"consumer {durable}: max_deliver must be -1 (unlimited) or >= 1, got {max_deliver}"
            )
        if ack_wait_s <= 0:
            raise InvalidInput(f"consumer {durable}: ack_wait_s must be positive, got {ack_wait_s}")
        try:
            info = await self.js.stream_info(stream)
        except nats.js.errors.NotFoundError:
            raise PreconditionFailed(f"stream {stream} does not exist; run ensure_streams() first") from None
        config = js_api.ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=subject,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            deliver_policy=js_api.DeliverPolicy.ALL,
            ack_wait=ack_wait_s,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending or max(concurrency * 4, 64),
        )
        try:
            await self.js.add_consumer(stream, config)
        except nats.js.errors.APIError as e:
            raise PreconditionFailed(
                f"cannot create or update consumer {durable} on {stream} for {subject}: {e.description}"
            ) from e
        worker = Worker(
            self,
            stream=stream,
            subject=subject,
            durable=durable,
            handler=handler,
            ack_wait_s=ack_wait_s,
            max_deliver=max_deliver,
            backoff_s=backoff_s,
            concurrency=concurrency,
            fetch_timeout_s=fetch_timeout_s,
            work_queue=_enum_value(info.config.retention) == js_api.RetentionPolicy.WORK_QUEUE.value,
        )
        await worker._start()
        self._workers.append(worker)
        return worker

    async def write_dead_letter(
        self,
        *,
        subject: str,
        stream: str,
        consumer: str,
        stream_seq: int,
        num_delivered: int,
        payload: bytes,
        headers: Mapping[str, str],
        error: str,
    ) -> js_api.PubAck:
        """Record a message that exhausted its retries.

        Idempotent per (stream, seq) within the duplicate window."""
        # JetStream control headers (Nats-*) would change how the record is stored; keep the original id aside
        hdrs = {k: str(v) for k, v in headers.items() if not k.lower().startswith("nats-")}
        original_id = headers.get(MSG_ID_HEADER)
        if original_id:
            hdrs[DL_MSG_ID] = original_id
        hdrs.update(
            {
                DL_SUBJECT: subject,
                DL_STREAM: stream,
                DL_SEQ: str(stream_seq),
                DL_DELIVERIES: str(num_delivered),
                DL_ERROR: _header_value(error) or "unknown error",
                DL_CONSUMER: consumer,
                MSG_ID_HEADER: f"deadletter-{stream}-{stream_seq}",
            }
        )
        return await self.js.publish(subjects.deadletter_subject(subject), payload, headers=hdrs)

    async def list_dead_letters(
        self, subject_filter: str = subjects.DEADLETTER_SUBJECTS, limit: int = 1000
    ) -> list[DeadLetter]:
        """Dead-letter records, oldest first. The filter is a dead-letter subject (wildcards allowed) or the
        original subject, e.g. `idlock.jobs.generate`."""
        if not subject_filter.startswith(subjects.PREFIX + ".deadletter."):
            subject_filter = subjects.deadletter_subject(subject_filter)
        out: list[DeadLetter] = []
        seq = 1
        while len(out) < limit:
            try:
                raw = await self.js.get_msg(
                    subjects.DEADLETTER_STREAM, seq=seq, subject=subject_filter, next=True
                )
            except nats.js.errors.NotFoundError:
                break
            h = dict(raw.headers or {})
            out.append(
                DeadLetter(
                    dead_subject=raw.subject or "",
                    dead_seq=raw.seq or 0,
                    subject=h.get(DL_SUBJECT, ""),
                    stream=h.get(DL_STREAM, ""),
                    stream_seq=int(h.get(DL_SEQ, "0")),
                    num_delivered=int(h.get(DL_DELIVERIES, "0")),
                    error=h.get(DL_ERROR, ""),
                    consumer=h.get(DL_CONSUMER, ""),
                    msg_id=h.get(DL_MSG_ID),
                    headers=h,
                    payload=raw.data or b"",
                    time=getattr(raw, "time", None),
                )
            )
            seq = (raw.seq or seq) + 1
        return out

    async def delete_consumer(self, stream: str, durable: str) -> bool:
        try:
            return await self.js.delete_consumer(stream, durable)
        except nats.js.errors.NotFoundError:
            return False
