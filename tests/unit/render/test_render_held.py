"""A rendered image whose saving failed is held for the job's retry (so the retry saves it rather than paying for
another render), but not for ever: the oldest go past the limit, and none stays past its max age, asked for or
not (no job waits that long, and an erased character's job never asks again)."""

from __future__ import annotations

import asyncio

from services.render.paid import held_renders
from tests.clock import ManualClock


def test_a_held_render_is_served_until_its_max_age_and_the_oldest_go_past_the_limit() -> None:
    clock = ManualClock(50.0)
    held = held_renders(3600.0, limit=2, clock=clock)
    held.put("jobs/a", b"a")
    clock.now += 3599.0
    assert held.get("jobs/a", None) == b"a"
    held.put("jobs/b", b"b")
    clock.now += 1.0  # a was rendered an hour ago: no retry gets it now
    assert held.get("jobs/a", None) is None and held.get("jobs/b", None) == b"b" and len(held) == 1
    held.put("jobs/c", b"c")
    held.put("jobs/d", b"d")
    assert held.get("jobs/b", None) is None and len(held) == 2  # past the limit: the oldest went
    held.pop("jobs/c")
    assert held.get("jobs/c", None) is None and held.get("jobs/d", None) == b"d"


def test_expire_drops_renders_nobody_asks_for_again() -> None:
    clock = ManualClock(50.0)
    held = held_renders(60.0, clock=clock)
    held.put("old", b"1")
    clock.now += 30.0
    held.put("new", b"2")
    clock.now += 30.0
    assert held.expire() == 1 and len(held) == 1 and held.get("new", None) == b"2"


async def test_the_render_service_expires_held_renders_on_its_own(tmp_path, monkeypatch) -> None:
    from services.render.rendering import Rendering
    from services.render.settings import RenderSettings

    monkeypatch.setenv("IDLOCK_DATA_DIR", str(tmp_path))
    rendering = Rendering(RenderSettings(providers=["compositor"], held_render_max_age_s=0.1))
    await rendering.open()
    try:
        rendering._held.put(("jobs/j/", "fingerprint"), (object(), object()))
        await asyncio.sleep(0.3)
        assert len(rendering._held) == 0
    finally:
        await rendering.close()
