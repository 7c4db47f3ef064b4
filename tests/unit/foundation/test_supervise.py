"""The local mesh's supervision policy: a dead component is started again after a backoff that doubles while it
keeps dying; one that dies more than `max_restarts` times within the window is given up on; old deaths are
forgiven. (The real thing, a kill -9 under `idlock up`, is in tests/e2e/test_local_mesh.py.)"""

from __future__ import annotations

import pytest

from idlock.supervise import GaveUp, Supervisor


class Processes:
    """Stands in for the mesh's processes: which have exited, and the restarts asked for."""

    def __init__(self) -> None:
        self.dead: dict[str, int] = {}
        self.restarted: list[str] = []

    def exited(self) -> dict[str, int]:
        return dict(self.dead)

    def restart(self, name: str) -> None:
        self.restarted.append(name)
        self.dead.pop(name, None)


def test_backoff_doubles_and_a_component_that_keeps_dying_is_given_up() -> None:
    now = [0.0]
    procs = Processes()
    sup = Supervisor(procs, max_restarts=3, window_s=100, clock=lambda: now[0])
    waits = []
    for _ in range(3):
        procs.dead["render"] = -9
        died = now[0]
        while not sup.check():
            now[0] += 0.5
        waits.append(now[0] - died)
        now[0] += 1
    assert waits == [1.0, 2.0, 4.0] and procs.restarted == ["render"] * 3
    procs.dead["render"] = 1
    with pytest.raises(GaveUp, match="render exited 4 times within 100 s"):
        sup.check()


def test_deaths_outside_the_window_are_forgiven() -> None:
    now = [0.0]
    procs = Processes()
    sup = Supervisor(procs, max_restarts=1, window_s=10, first_backoff_s=0, clock=lambda: now[0])
    procs.dead["memory"] = -9
    assert sup.check() == ["memory"]
    now[0] = 60.0  # long after
    procs.dead["memory"] = -9
    assert sup.check() == ["memory"]  # not a second death within the window
    assert procs.exited() == {}
