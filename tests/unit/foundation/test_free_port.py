"""free_port: ports for child processes that outgoing connections cannot take first."""

import socket

from idlock.natsd import _ephemeral_range, free_port


def test_ports_are_distinct_bindable_and_outside_the_ephemeral_range():
    lo, hi = _ephemeral_range()
    ports = [free_port() for _ in range(40)]
    assert len(set(ports)) == len(ports)
    assert all(not lo <= p <= hi for p in ports), (lo, hi, ports)
    for p in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_a_port_in_use_is_skipped(monkeypatch):
    from idlock import natsd

    with socket.socket() as held:
        held.bind(("127.0.0.1", free_port()))
        taken = held.getsockname()[1]
        monkeypatch.setattr(natsd, "_handed_out", set())

        def taken_first(population, k):
            return [taken, *(p for p in population if p != taken)][:k]

        monkeypatch.setattr(natsd.random, "sample", taken_first)
        got = free_port()
        assert got != taken
