"""The gateway's events on NATS (reports filed and resolved). The gateway connects on its first event, not at
start (it serves without NATS); while NATS is down an event is logged as lost, and the audit log is the record."""

from __future__ import annotations

import logging
import time

from google.protobuf.message import Message

from idlock.bus import EventBus
from idlock.settings import NatsSettings

log = logging.getLogger("idlock.gateway")

#: at most one connection attempt this often while NATS does not answer
RETRY_S = 60.0


class GatewayEvents:
    def __init__(self, settings: NatsSettings) -> None:
        self.settings = settings
        self.bus: EventBus | None = None
        self._retry_at = 0.0

    async def publish(self, subject: str, message: Message, msg_id: str) -> None:
        if self.bus is None and time.monotonic() >= self._retry_at:
            self._retry_at = time.monotonic() + RETRY_S
            self.bus = await EventBus.connect_optional(
                self.settings, "gateway", wait_s=10.0, without="events are logged as lost"
            )
        if self.bus is None:
            log.warning("event %s (%s) not published: no NATS connection", subject, msg_id)
            return
        try:
            await self.bus.publish(subject, message, msg_id=msg_id)
        except Exception as e:  # noqa: BLE001 - an event is not worth failing the request that made it
            log.warning("event %s (%s) not published: %s", subject, msg_id, e)

    async def close(self) -> None:
        if self.bus is not None:
            await self.bus.close()
            self.bus = None


__all__ = ["GatewayEvents"]
