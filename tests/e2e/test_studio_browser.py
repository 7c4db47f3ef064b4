"""The studio in a real browser (Debian's Chromium, driven by Playwright with `executable_path`) against a real local
mesh: sign up, create a character from real photos, make two scenes and see them, read the composed prompt, make an
API key, delete the character. Without a browser the tests skip with the reason, except under CI=true, where a
missing browser fails the run."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from idlock.db import Database
from idlock.mesh import LocalMesh
from idlock.settings import DatabaseSettings
from services.trainer.registry import TrainerRepository
from tests.e2e.conftest import PASSWORD, face_photos

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("IDLOCK_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
#: Chromium as the machine allows it: no sandbox as root in a container, no calls home on a closed network
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCENE_1 = "Mira stands in the castle courtyard wearing armour and holding a silver sword"
SCENE_2 = "Mira rides through the forest at dawn"


#: a folder to keep screenshots of each step in (for people reviewing the page); unset: none are taken
SCREENSHOTS = os.environ.get("IDLOCK_TEST_SCREENSHOTS", "")


def _snap(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests cannot run under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).is_file():
        _unavailable(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set IDLOCK_TEST_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _unlabelled(page) -> list[str]:
    """Form controls on the page that have neither a <label> nor an aria-label."""
    return page.evaluate(
        """() => [...document.querySelectorAll('input, textarea, select, button')]
            .filter(el => !el.closest('[hidden]') && !(el.labels && el.labels.length)
                          && !el.getAttribute('aria-label') && !(el.tagName === 'BUTTON' && el.textContent.trim()))
            .map(el => el.outerHTML.slice(0, 80))"""
    )


def _fits(page, width: int) -> bool:
    page.set_viewport_size({"width": width, "height": 900})
    return page.evaluate("() => document.documentElement.scrollWidth") <= width


def _image_loaded(page, scene: int) -> bool:
    img = page.locator(f'.scene[data-scene="{scene}"] img')
    img.wait_for(state="visible")
    img.scroll_into_view_if_needed()  # scenes load lazily, as a person scrolls to them
    page.wait_for_function("el => el.complete", arg=img.element_handle(), timeout=30_000)
    return img.evaluate("el => el.naturalWidth > 0")


async def _trained_models(data_dir: Path, character_id: str) -> None:
    """Two trained versions of the character in the mesh trainer's own database, v2 active, as two training runs
    would leave them (the studio mesh has no base model to train on; the page only reads and acts on them)."""
    db = Database.open(DatabaseSettings(url=""), service="trainer", data_dir=data_dir)
    repo = TrainerRepository(db)
    try:
        for k, (baseline, final) in enumerate(((0.61, 0.72), (0.72, 0.78)), start=1):
            row = await repo.register_lora(
                character_id, run_id=f"run{k}", dataset_uri="", training_images=30 * k
            )
            await repo.update_lora(
                row.id,
                file_uri=f"file:///nowhere/{row.id}",
                status="validating",
                baseline_idr=baseline,
                final_idr=final,
            )
            await repo.activate(row.id)
    finally:
        await db.close()


def test_a_person_uses_idlock_end_to_end_in_a_browser(
    browser, studio_mesh: LocalMesh, faces_dir: Path, tmp_path: Path
) -> None:
    base = studio_mesh.components["gateway"].address
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(60_000)
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)

    # sign up (a wrong password first: the error is said in words)
    page.goto(base + "/")
    page.get_by_role("heading", name="Sign in").wait_for()
    page.get_by_label("Email").fill("browser@example.com")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "invalid email or password" in alert.inner_text() and "{" not in alert.inner_text()
    assert problems == [
        f"401 {base}/auth/login",
        "Failed to load resource: the server responded with a status of 401 (Unauthorized)",
    ]
    problems.clear()
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Your name (optional)").fill("Bea Browser")
    page.get_by_label("Email").fill("browser@example.com")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.get_by_role("heading", name="Characters").wait_for()
    assert page.locator("#who").inner_text() == "Bea Browser"

    # create a character from real photos, with the consent box (keyboard: the box is reached and ticked by Space)
    page.get_by_role("link", name="New character").first.click()
    page.get_by_role("heading", name="New character").wait_for()
    assert _unlabelled(page) == []
    page.get_by_label("Name").fill("Mira")
    page.get_by_label("Description").fill("a wandering knight")
    page.get_by_label("Hair").fill("short auburn hair")
    landscape = tmp_path / "landscape.png"  # a photo without a face
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    Image.fromarray(gradient).convert("RGB").save(landscape)
    page.set_input_files("#photos", [str(p) for p in [*face_photos(faces_dir, 3), landscape]])
    previews = page.locator(".previews img")
    previews.nth(3).wait_for()
    _snap(page, "1-new-character")
    assert previews.count() == 4
    assert all(previews.nth(i).evaluate("el => el.naturalWidth > 0") for i in range(4))
    page.get_by_label("I confirm I have the right").focus()
    page.keyboard.press("Space")
    assert page.get_by_label("I confirm I have the right").is_checked()
    page.get_by_role("button", name="Create character").click()
    alert.get_by_text("no face found in photo 4").wait_for()  # said in words; nothing made, the photos stay
    assert f"409 {base}/api/v1/characters" in problems  # the refusal itself, and nothing else went wrong
    assert all("409" in p for p in problems), problems
    problems.clear()
    assert previews.count() == 4
    page.get_by_role("button", name="Remove photo 4").click()
    assert previews.count() == 3
    page.get_by_role("button", name="Create character").click()
    page.get_by_role("heading", name="Photo check").wait_for()
    report = page.locator(".quality li").all_inner_texts()
    assert len(report) == 3 and all("accepted, 1 face found" in r for r in report), report
    _snap(page, "2-photo-check")
    page.get_by_role("link", name="Open Mira").click()
    page.get_by_role("heading", name="Mira", exact=True).wait_for()
    assert _unlabelled(page) == []

    # two scenes, each followed live to the image on screen
    timings = []
    for scene, prompt in ((1, SCENE_1), (2, SCENE_2)):
        page.get_by_label("What happens").fill(prompt)
        started = time.monotonic()
        page.get_by_role("button", name="Generate").click()
        assert _image_loaded(page, scene)
        timings.append(time.monotonic() - started)
    print(f"studio: Generate -> image on screen: {', '.join(f'{t:.1f} s' for t in timings)}")
    assert _image_loaded(page, 1) and _image_loaded(page, 2)

    scene2 = page.locator('.scene[data-scene="2"]')
    chips = scene2.locator(".chip").all_inner_texts()
    assert any(c.startswith("silver sword") and "since scene 1" in c for c in chips), chips
    assert "offline/compositor" in scene2.locator(".badge.provider").inner_text()
    assert "IDR" in scene2.locator(".meta").inner_text()
    # the compositor's face is the reference's: the page says so next to the IDR
    assert "Near-copy of a reference" in scene2.locator(".badge.copy").inner_text()
    pre = scene2.locator("details.prompt pre")
    assert not pre.is_visible()
    scene2.get_by_text("Composed prompt").click()
    assert pre.is_visible() and "silver sword" in pre.inner_text() and "short auburn hair" in pre.inner_text()
    scene2.get_by_role("button", name="Thumbs up for scene 2").click()
    scene2.get_by_text("Thanks: marked as a good result.").wait_for()
    _snap(page, "3-character-1440")

    # a video scene plays from its link (the browser fetches it in byte ranges)
    page.get_by_label("What happens").fill("Mira waves from the castle wall")
    page.get_by_label("Video").check()
    page.get_by_role("button", name="Generate").click()
    player = page.locator('.scene[data-scene="3"] video')
    player.wait_for()
    page.wait_for_function("v => v.readyState >= 1 || v.error", arg=player.element_handle(), timeout=30_000)
    state = player.evaluate(
        "v => ({ready: v.readyState, duration: v.duration, error: v.error && v.error.code, src: v.currentSrc})"
    )
    assert state["error"] is None and state["duration"] > 0, state

    # identity over time: a point per scene in the chart, and the trained models, which the owner can roll back
    character_id = page.url.split("#/c/", 1)[1]
    with ThreadPoolExecutor(1) as pool:  # Playwright's own loop runs on this thread
        pool.submit(asyncio.run, _trained_models(studio_mesh.data_dir, character_id)).result()
    learning = page.locator("section.learning")
    for _ in range(60):  # the trainer keeps each job's IDR as its `succeeded` event reaches it
        page.reload()
        learning.locator("table.loras").wait_for()
        if learning.locator(".idr-chart circle").count() == 3:
            break
        time.sleep(0.5)
    assert learning.locator(".idr-chart circle").count() == 3
    assert "last 3 scenes" in learning.locator(".idr-chart").get_attribute("aria-label")
    assert learning.locator(".legend").inner_text() == "base model"  # no scene was rendered with a LoRA
    assert learning.locator(".stage").get_attribute("data-stage") == "active"
    assert learning.locator('tr[data-version="2"] .badge').inner_text() == "active"
    assert "72% → 78% (+6 pts)" in learning.locator('tr[data-version="2"]').inner_text()
    learning.get_by_role("button", name="Roll back").click()
    page.locator("#confirm-ok").click()
    learning.locator('tr[data-version="1"] .badge.active').wait_for()
    assert learning.locator('tr[data-version="2"] .badge').inner_text() == "archived"
    assert learning.locator(".stage").get_attribute("data-stage") == "rolled_back"
    learning.get_by_text("Decisions").click()
    assert "Rolled back" in learning.locator(".decisions").inner_text()
    learning.get_by_role("button", name="Use model v2").click()
    page.locator("#confirm-ok").click()
    learning.locator('tr[data-version="2"] .badge.active').wait_for()
    _snap(page, "3b-identity-over-time")

    # the sheet edited and saved
    page.get_by_label("Eyes").fill("green")
    page.get_by_role("button", name="Save changes").click()
    page.get_by_text("The next scene uses it.").wait_for()

    # usable on a phone and on a wide screen
    assert _fits(page, 375), "the character page scrolls sideways at 375 px"
    _snap(page, "4-character-375")
    assert _fits(page, 1440)

    # an API key, shown once
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Label").fill("my service")
    page.get_by_role("button", name="Create key").click()
    assert page.locator("code").inner_text().startswith("idl_")

    # forget the character, after confirming
    page.get_by_role("link", name="Characters").first.click()
    page.get_by_role("link", name="Mira").click()
    page.get_by_role("button", name="Delete character").click()
    page.get_by_role("button", name="Delete Mira").click()
    page.get_by_text("Mira was deleted everywhere.").wait_for()
    page.get_by_text("No characters yet").wait_for()
    assert problems == []
