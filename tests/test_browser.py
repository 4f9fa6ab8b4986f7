"""The settings page in headless Chromium, as an admin uses it."""

from __future__ import annotations

import threading
import typing as t

import pytest
from werkzeug.serving import make_server

from .conftest import launch_chromium
from .conftest import run_worker
from .conftest import send_completion
from .test_example_app import SCREENSHOTS

pytestmark = pytest.mark.browser
KEY = "wk_browser_secret_key_51ab"


@pytest.fixture
def served(make_app, segment) -> t.Iterator[tuple[t.Any, str, dict[str, bool]]]:
    app = make_app(REFINER_SEGMENT_WRITE_KEY=None, REFINER_SEGMENT_API_HOST=None)
    allow = {"admin": True}
    app.extensions["refiner_segment"].ext.settings_guard(lambda: allow["admin"])
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}/integrations/segment/", allow
    finally:
        server.shutdown()


def test_admin_walk(served, segment, redis_url):
    from playwright.sync_api import sync_playwright

    app, url, allow = served
    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(url)
        # Save a write key pointing at the Segment stand-in.
        page.fill("#write_key", KEY)
        page.check("input[name=region][value=custom]")
        page.fill("#custom_api_host", segment.url)
        page.click("#save")
        page.wait_for_selector("text=Settings saved.")
        html = page.content()
        assert "••••51ab" in html and KEY not in html
        # A bad value gets a form error next to the field, not a 500.
        page.fill("#trait_prefix", "Not Valid!")
        page.click("#save")
        assert "lowercase letters" in page.inner_text("#error-trait_prefix")
        page.goto(url)
        # Send a test event and read Segment's answer.
        page.click("#send-test")
        page.wait_for_selector("text=accepted the test event: HTTP 200")
        assert [m["event"] for m in segment.messages] == ["Survey Completed"]
        # A failed delivery shows in the log; retry it.
        segment.set_fault(status=400, times=1)
        send_completion(app, 1)
        run_worker(app, redis_url)
        page.goto(url)
        assert page.inner_text("#count-failed") == "1"
        assert "HTTP 400" in page.inner_text("#deliveries")
        page.screenshot(path=str(SCREENSHOTS / "settings.png"), full_page=True)
        page.click("#retry-failed")
        page.wait_for_selector("text=1 failed deliveries queued again.")
        run_worker(app, redis_url)
        page.goto(url)
        assert page.inner_text("#count-sent") == "1"
        assert page.inner_text("#count-failed") == "0"
        # A POST without the CSRF token is refused.
        refused = page.request.post(url + "retry-failed", form={})
        assert refused.status == 400
        # Without the guard's approval: 403.
        allow["admin"] = False
        assert page.goto(url).status == 403
        browser.close()
