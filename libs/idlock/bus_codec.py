"""How a protobuf message travels on the bus: its type in a header, the dead-letter headers, and decoding any
message back into its class."""

from __future__ import annotations

import logging
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from idlock.errors import InvalidInput, PreconditionFailed

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

MAX_HEADER_VALUE = 2000


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


def header_value(text: str) -> str:
    """Header values are single lines; long error texts are cut."""
    flat = " | ".join(line.strip() for line in str(text).splitlines() if line.strip())
    return flat[:MAX_HEADER_VALUE]


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
