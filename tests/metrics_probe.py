"""Tests read a process's metrics as Prometheus would: the text exposition of the process's registry, parsed,
before and after the code under test runs (the registry is shared by every test of the process)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, generate_latest

from idlock.mesh_metrics import Sample, parse, total


def exposition() -> list[Sample]:
    return parse(generate_latest(REGISTRY).decode())


class Change:
    def __init__(self) -> None:
        self.before = exposition()
        self.after: list[Sample] = []

    def __call__(self, name: str, **labels: str) -> float:
        """How much the samples named `name` with these labels (others summed over) grew."""
        after = self.after or exposition()
        return total(after, name, **labels) - total(self.before, name, **labels)


@contextmanager
def metrics_change() -> Iterator[Change]:
    change = Change()
    yield change
    change.after = exposition()
