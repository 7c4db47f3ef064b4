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
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import Message
from nats.aio.client import Client as NatsClient
from nats.js import api as js_api
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from idlock import subjects
from idlock.bus_codec import (  # noqa: F401 (the bus's public names, imported from here by its users)
    DL_CONSUMER,
    DL_DELIVERIES,
    DL_ERROR,
    DL_MSG_ID,
    DL_SEQ,
    DL_STREAM,
    DL_SUBJECT,
    MSG_ID_HEADER,
    TYPE_HEADER,
    MessageTypeUnknown,
    StreamConfigMismatch,
    decode,
    header_value,
    message_class,
)
from idlock.bus_worker import DeadLetter, Delivery, Handler, Worker  # noqa: F401
from idlock.errors import IdlockError, InvalidInput, PreconditionFailed, Unavailable
from idlock.settings import NatsSettings

log = logging.getLogger("idlock.bus")


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


class EventBus:
    def __init__(
        self, nc: NatsClient, settings: NatsSettings, tracer_provider: trace.TracerProvider | None = None
    ) -> None:
        self.nc = nc
        self.settings = settings
        self.js = nc.jetstream(timeout=max(settings.connect_timeout_s, 5.0))
        #: for creating and checking streams, buckets and consumers (start-up, not the hot path)
        self.js_setup = nc.jetstream(timeout=max(settings.setup_timeout_s, settings.connect_timeout_s))
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

    @classmethod
    async def connect_optional(
        cls, settings: NatsSettings, name: str, *, wait_s: float, without: str
    ) -> EventBus | None:
        """Connected with its streams ensured, or None (logged with `without`, what the service then does
        without) when NATS does not answer within `wait_s`: for services whose bus is an add-on."""
        try:
            bus = await asyncio.wait_for(cls.connect(settings, name=name), wait_s)
            await bus.ensure_streams()
            return bus
        except (TimeoutError, IdlockError, OSError) as e:
            log.warning("NATS at %s unreachable (%s): %s", settings.url, e, without)
            return None

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
                info = await self.js_setup.stream_info(cfg.name)
            except nats.js.errors.NotFoundError:
                try:
                    await self.js_setup.add_stream(cfg)
                    log.info("created stream %s (%s)", cfg.name, cfg.subjects)
                    continue
                except nats.js.errors.BadRequestError:
                    info = await self.js_setup.stream_info(cfg.name)  # created by a concurrent starter
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
        # a message written earlier (the outbox) carries the trace of the change that wrote it: that is its parent
        parent = propagate.extract(hdrs) if "traceparent" in hdrs else None
        with self.tracer.start_as_current_span(
            f"{subject} publish",
            context=parent,
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
            info = await self.js_setup.stream_info(stream)
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
            await self.js_setup.add_consumer(stream, config)
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
                DL_ERROR: header_value(error) or "unknown error",
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

    async def consumer_state(self, stream: str, durable: str) -> tuple[int, int]:
        """(messages not yet given to the consumer, messages given and not yet acknowledged); zeros when it does
        not exist."""
        try:
            info = await self.js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            return 0, 0
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)

    async def backlog(self, stream: str, durable: str) -> int:
        """Messages a durable consumer has not been given yet (0 when it does not exist)."""
        return (await self.consumer_state(stream, durable))[0]
