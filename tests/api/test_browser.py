"""The web pages in a real headless Chromium (Debian's, driven by Playwright) against a live uvicorn."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.factories import World
from tests.chromium import CHROMIUM_ARGS, require_chromium

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(app: Any) -> Iterator[str]:
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = require_chromium()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 390, "height": 844})  # a phone
        pg = context.new_page()
        pg.set_default_timeout(15_000)
        yield pg
        context.close()
        browser.close()


def _login(page: Any, server: str, key: str) -> None:
    page.goto(f"{server}/login")
    page.fill("#api_key", key)
    page.click("button[type=submit]")


def test_sales_rep_submits_a_note_from_a_phone(page: Any, server: str, keys: Any, world: World) -> None:
    _login(page, server, keys["sales"])
    page.wait_for_url(f"{server}/notes/new")
    assert page.locator("#accounts option[value='Acme Corp']").count() == 1
    page.fill("#account_name", "Acme Corp")
    page.fill("#text", "They need scheduled Excel exports before renewal")
    page.fill("#deal_amount", "40000")
    page.click("button.big")
    page.wait_for_url(f"{server}/notes/*")
    assert "Not yet assigned" in page.inner_text("#note-theme")
    box = page.locator("button.big, a.big").first.bounding_box()
    assert box is not None and box["height"] >= 40  # a thumb-sized target


def test_pm_sees_the_dashboard_and_opens_a_theme(page: Any, server: str, keys: Any, world: World) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    _login(page, server, keys["pm"])
    page.wait_for_url(f"{server}/")
    assert page.locator("ol.opps li").count() == 2
    assert page.locator("svg.spark").count() >= 2
    page.click("text=export to excel")
    page.wait_for_url(f"{server}/themes/{world.themes[0].id}")
    assert page.inner_text("#theme-label") == "export to excel"
    assert page.locator("svg.chart rect.bar").count() == 26
    page.fill("#label", "Excel exports")
    page.click("form[action$='/rename'] button")
    page.wait_for_load_state()
    assert page.inner_text("#theme-label") == "Excel exports"
