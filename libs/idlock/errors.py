"""Domain errors. Core modules raise these; the gRPC layer maps them to status codes and the gateway to HTTP.

Core modules never import grpc: they raise one of these with a message that names the problem.
"""

from __future__ import annotations

#: the gRPC trailer carrying `IdlockError.reason`
REASON_TRAILER = "idlock-reason"


def reason_of(err: object) -> str:
    """The `idlock-reason` trailer of a failed gRPC call ("" for none)."""
    trailing = getattr(err, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key == REASON_TRAILER:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


class IdlockError(Exception):
    """Base of every error IDLock reports to a caller. `code` is the stable machine-readable name."""

    code = "internal"
    grpc_status = "INTERNAL"
    http_status = 500
    #: a finer machine-readable reason than the status (e.g. prompt_refused, protected_identity): it travels
    #: between services in the `idlock-reason` trailer and becomes the REST error's code
    reason = ""

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidInput(IdlockError):
    code = "invalid_argument"
    grpc_status = "INVALID_ARGUMENT"
    http_status = 400


class NotFound(IdlockError):
    code = "not_found"
    grpc_status = "NOT_FOUND"
    http_status = 404


class AlreadyExists(IdlockError):
    code = "already_exists"
    grpc_status = "ALREADY_EXISTS"
    http_status = 409


class PreconditionFailed(IdlockError):
    """The request is well-formed but the system is not in a state to honour it (no consent, no face, ...)."""

    code = "failed_precondition"
    grpc_status = "FAILED_PRECONDITION"
    http_status = 409


class ContentBlocked(PreconditionFailed):
    """A provider's safety filter refused the prompt or its output: a job ends `moderated`, nothing is kept."""

    reason = "moderated"


class PermissionDenied(IdlockError):
    code = "permission_denied"
    grpc_status = "PERMISSION_DENIED"
    http_status = 403


class QuotaExceeded(IdlockError):
    code = "resource_exhausted"
    grpc_status = "RESOURCE_EXHAUSTED"
    http_status = 429


class Unavailable(IdlockError):
    """A transient fault: the caller may retry."""

    code = "unavailable"
    grpc_status = "UNAVAILABLE"
    http_status = 503


class StorageUnavailable(Unavailable):
    """Object storage cannot take or give objects now (full, not writable, unreachable): retried like a peer
    outage, and named in a job's error when it outlasts the retry window."""

    reason = "storage_unavailable"


class StorageFull(StorageUnavailable):
    reason = "storage_full"


class StorageNotWritable(StorageUnavailable):
    reason = "storage_not_writable"


class StorageUnreachable(StorageUnavailable):
    reason = "storage_unreachable"


class DeadlineExceeded(IdlockError):
    code = "deadline_exceeded"
    grpc_status = "DEADLINE_EXCEEDED"
    http_status = 504


class Cancelled(IdlockError):
    code = "cancelled"
    grpc_status = "CANCELLED"
    http_status = 409


class Unimplemented(IdlockError):
    code = "unimplemented"
    grpc_status = "UNIMPLEMENTED"
    http_status = 501


#: finer errors known by their reason, so a peer's `idlock-reason` trailer brings back the same type
BY_REASON: dict[str, type[IdlockError]] = {
    cls.reason: cls
    for cls in (ContentBlocked, StorageUnavailable, StorageFull, StorageNotWritable, StorageUnreachable)
}


def required(value: str, name: str) -> str:
    """`value`, or InvalidInput naming the missing field."""
    if not value:
        raise InvalidInput(f"{name} is required")
    return value
