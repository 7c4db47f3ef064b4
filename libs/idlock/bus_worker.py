"""Durable pull workers: one delivery at a time per handler slot, explicit ack, `in_progress()` heartbeats, backoff on
redelivery, and the dead-letter record on the last attempt (or on the server's MAX_DELIVERIES advisory, for a
worker that died on it)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import nats
import nats.errors
import nats.js.errors
from google.protobuf.message import Message
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from idlock.bus_codec import MAX_HEADER_VALUE, MSG_ID_HEADER, TYPE_HEADER, decode, header_value
from idlock.errors import InvalidInput
from idlock.metrics import BUS_DEAD_LETTERS, BUS_REDELIVERIES

if TYPE_CHECKING:
    from idlock.bus import EventBus

log = logging.getLogger("idlock.bus")


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
        payload = b"+TERM" + ((" " + header_value(reason)).encode() if reason else b"")
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
        if n > 1:
            BUS_REDELIVERIES.labels(self.durable).inc()
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
        BUS_DEAD_LETTERS.labels(self.durable).inc()
        await self.bus.nc.publish(msg.reply, b"+TERM " + header_value(error).encode()[:MAX_HEADER_VALUE])
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
            BUS_DEAD_LETTERS.labels(self.durable).inc()
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
