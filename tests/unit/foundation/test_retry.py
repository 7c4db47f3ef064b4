"""Retry policies and error classes: what is waited out, for how long between tries, and what a job's error says
when the window runs out; storage errors keep their type from the OS error that caused them."""

from __future__ import annotations

import errno
import random
from pathlib import Path

import pytest

from idlock import retry
from idlock.errors import (
    DeadlineExceeded,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    StorageFull,
    StorageNotWritable,
    StorageUnreachable,
    Unavailable,
)
from idlock.storage import local_write_error


def test_delays_double_with_jitter_up_to_the_maximum() -> None:
    policy = retry.RetryPolicy(initial_s=1.0, multiplier=2.0, max_interval_s=10.0, jitter=0.2)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        base = min(2 ** (n - 1), 10.0)
        assert 0.8 * base <= d <= base
    assert delays[-1] <= 10.0 and delays[2] > delays[0]
    # two callers that failed together do not retry in step
    assert len({round(policy.delay(3), 6) for _ in range(20)}) > 1


def test_what_is_transient_and_what_fails_at_once() -> None:
    for e in (Unavailable("x"), DeadlineExceeded("x"), QuotaExceeded("x"), StorageFull("x"), TimeoutError()):
        assert isinstance(e, retry.TRANSIENT), e
    for e in (InvalidInput("x"), NotFound("x"), PreconditionFailed("x"), ValueError("x")):
        assert not isinstance(e, retry.TRANSIENT), e


def test_what_a_job_waits_for_and_its_error_code_when_the_window_ends() -> None:
    peer = Unavailable("render.RenderImage: failed to connect", details={"peer": "render.RenderImage"})
    assert retry.waiting_for(peer) == "render" and retry.failure_code(peer) == "unavailable"
    full = StorageFull("object storage is full", details={"peer": "render.RenderImage"})
    assert retry.waiting_for(full) == "storage" and retry.failure_code(full) == "storage_full"
    assert retry.waiting_for(QuotaExceeded("429")) == "provider"
    assert retry.failure_code(TimeoutError()) == "deadline_exceeded"


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (errno.ENOSPC, StorageFull, "object storage is full"),
        (errno.EDQUOT, StorageFull, "object storage is full"),
        (errno.EROFS, StorageNotWritable, "not writable"),
        (errno.EACCES, StorageNotWritable, "not writable"),
        (errno.EIO, StorageUnreachable, "unreachable"),
    ],
)
def test_a_failed_local_write_names_the_cause(code: int, kind: type, words: str) -> None:
    err = local_write_error(Path("/data/objects"), "jobs/j1/image.png", OSError(code, "os says no"))
    assert type(err) is kind and words in err.message and "jobs/j1/image.png" in err.message
    assert "/data" not in err.message  # never a server path
    assert err.reason.startswith("storage_")
    other = OSError(errno.ENOENT, "missing")
    assert local_write_error(Path("/x"), "k", other) is other


def test_a_peer_can_have_a_window_of_its_own() -> None:
    policy = retry.RetryPolicy(window_s=600, window_by_peer_s=(("render", 1800.0),))
    assert policy.window_for("render") == 1800 and policy.window_for("memory") == 600
