"""A rendered image whose saving failed is held for the job's retry (so the retry saves it rather than paying for
another render), but not for ever: the oldest go past the limit, and none stays past its max age, asked for or
not (no job waits that long, and an erased character's job never asks again)."""

from __future__ import annotations

import asyncio

from services.render.paid import Held
from tests.clock import ManualClock


def test_a_held_render_is_served_until_its_max_age_and_the_oldest_go_past_the_limit() -> None:
    clock = ManualClock(50.0)
    held: Held[str, bytes] = Held(limit=2, max_age_s=3600.0, clock=clock)
    held.hold("jobs/a", b"a")
    clock.now += 3599.0
    assert held.get("jobs/a") == b"a"
    held.hold("jobs/b", b"b")
    clock.now += 1.0  # a was rendered an hour ago: no retry gets it now
    assert held.get("jobs/a") is None and held.get("jobs/b") == b"b" and len(held) == 1
    held.hold("jobs/c", b"c")
    held.hold("jobs/d", b"d")
    assert held.get("jobs/b") is None and len(held) == 2  # past the limit: the oldest went
    held.release("jobs/c")
    assert held.get("jobs/c") is None and held.get("jobs/d") == b"d"


def test_expire_drops_renders_nobody_asks_for_again() -> None:
    clock = ManualClock(50.0)
    held: Held[str, bytes] = Held(max_age_s=60.0, clock=clock)
    held.hold("old", b"1")
    clock.now += 30.0
    held.hold("new", b"2")
    clock.now += 30.0
    assert held.expire() == 1 and len(held) == 1 and held.get("new") == b"2"


async def test_the_render_service_expires_held_renders_on_its_own(tmp_path, monkeypatch) -> None:
    from services.render.rendering import Rendering
    from services.render.settings import RenderSettings

    monkeypatch.setenv("IDLOCK_DATA_DIR", str(tmp_path))
    rendering = Rendering(RenderSettings(providers=["compositor"], held_render_max_age_s=0.1))
    await rendering.open()
    try:
        rendering._held.hold(("jobs/j/", "fingerprint"), (object(), object()))
        await asyncio.sleep(0.3)
        assert len(rendering._held) == 0
    finally:
        await rendering.close()
