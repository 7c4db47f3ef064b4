"""Keeping the local mesh up (`idlock up`): a component that dies is started again on its address, after a
backoff that doubles while it keeps dying (1 s up to 30 s), and the restart is logged. A component that dies
`max_restarts` times within `window_s` cannot be kept up: the supervisor gives up, and `idlock up` stops the mesh
and exits non-zero."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger("idlock.mesh")


class Supervised(Protocol):
    def exited(self) -> dict[str, int]:
        """Components whose process has ended, with their exit codes."""
        ...

    def restart(self, name: str) -> None:
        """Start the component again on its address (without waiting for it to serve)."""
        ...


class GaveUp(Exception):
    """A component that cannot be kept up."""


@dataclass
class Supervisor:
    mesh: Supervised
    max_restarts: int = 5
    window_s: float = 120.0
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    #: name -> times it died (within the window)
    deaths: dict[str, list[float]] = field(default_factory=dict)
    #: name -> when it may be started again
    due: dict[str, float] = field(default_factory=dict)

    def check(self) -> list[str]:
        """Restart what died and is due; the names restarted. Raises GaveUp for one that cannot be kept up."""
        now = self.clock()
        started = []
        for name, code in sorted(self.mesh.exited().items()):
            if name not in self.due:  # newly dead: count it, and schedule the restart
                recent = [t for t in self.deaths.get(name, []) if now - t < self.window_s] + [now]
                self.deaths[name] = recent
                if len(recent) > self.max_restarts:
                    raise GaveUp(
                        f"{name} exited {len(recent)} times within {self.window_s:.0f} s (last code {code}); "
                        "giving up"
                    )
                backoff = min(self.max_backoff_s, self.first_backoff_s * 2 ** (len(recent) - 1))
                self.due[name] = now + backoff
                log.warning("%s exited with code %s; starting it again in %.0f s", name, code, backoff)
            if now >= self.due[name]:
                self.mesh.restart(name)
                del self.due[name]
                started.append(name)
                log.warning("%s started again (restart %d)", name, len(self.deaths[name]))
        return started


__all__ = ["GaveUp", "Supervised", "Supervisor"]
