"""The delivery insight chart in headless Chromium; its screenshot is the README's."""

from __future__ import annotations

import threading
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import make_server

from .conftest import launch_chromium
from .insight_support import seed

pytestmark = pytest.mark.browser
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "insight.png"


@pytest.fixture
def served(make_app: t.Callable[..., Flask]) -> t.Iterator[tuple[Flask, str]]:
    app = make_app()
    app.extensions["refiner_segment"].owner.settings_guard(lambda: True)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}/integrations/segment/"
    finally:
        server.shutdown()
        thread.join(5)


def _history() -> list[tuple[str, float, float]]:
    """A month of deliveries: a daily rhythm, an outage 5 hours ago, skips."""
    rows: list[tuple[str, float, float]] = []
    for hour in range(24 * 30):
        busy = 3 + (hour * 7) % 9 if (hour % 24) in range(6, 22) else 1 + hour % 2
        rows += [("sent", hour + 0.5, 0.2 + (n % 5) / 10) for n in range(busy)]
        if hour % 24 == 5:
            rows += [("failed", hour + 0.4, 1.0)] * 6
        if hour % 11 == 0:
            rows.append(("skipped", hour + 0.3, 0))
    return rows


def test_chart_empty_then_drawn(served: tuple[Flask, str]) -> None:
    from playwright.sync_api import sync_playwright

    app, url = served
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            messages: list[str] = []
            page.on("console", lambda m: messages.append(m.text))
            assert page.goto(url).status == 200
            # Empty: the axes and a sentence, not a blank box.
            assert page.is_visible("#chart-hourly")
            assert "No deliveries in the last 24 hours." in page.inner_text("#insight")
            assert page.is_visible("#latency-none")

            # Only failures: the banner says so.
            seed(app, [("failed", 1.5, 1.0)] * 3)
            page.reload()
            assert page.is_visible("#all-failing")

            seed(app, _history())
            page.reload()
            assert not page.is_visible("#all-failing")
            bars = page.locator("#chart-hourly .rs-bar")
            assert bars.count() == 24
            assert page.locator("#chart-daily .rs-bar").count() == 30
            box = page.locator("#chart-hourly").bounding_box()
            assert box is not None and box["width"] > 300 and box["height"] > 80
            # Bars have height: the stacked rectangles are drawn.
            drawn = page.locator("#chart-hourly rect[data-series=sent]")
            assert drawn.count() >= 20
            assert page.locator("#chart-hourly rect[data-series=failed]").count() >= 1
            assert "p50" in page.inner_text("#latency")
            assert not [m for m in messages if "Content Security Policy" in m]
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.locator("#insight").screenshot(path=str(SCREENSHOT))
        finally:
            browser.close()
