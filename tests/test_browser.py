"""The settings page in headless Chromium, as an admin uses it (issue 3)."""

from __future__ import annotations

import threading
import typing as t

import pytest
from flask import Flask
from werkzeug.serving import make_server

from .conftest import launch_chromium
from .conftest import run_worker
from .conftest import send_completion

pytestmark = pytest.mark.browser
KEY = "wk_browser_secret_key_51ab"


@pytest.fixture
def served(
    make_app: t.Callable[..., Flask],
) -> t.Iterator[tuple[Flask, str, dict[str, bool]]]:
    """The host app on a real port; ``allow["admin"]`` is what its guard says."""
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True,  # the stand-in is on 127.0.0.1
    )
    allow = {"admin": True}
    app.extensions["refiner_segment"].owner.settings_guard(lambda: allow["admin"])
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, f"http://127.0.0.1:{server.server_port}/integrations/segment/", allow
    finally:
        server.shutdown()
        thread.join(5)


def test_admin_walk(
    served: tuple[Flask, str, dict[str, bool]], segment: t.Any, redis_url: str
) -> None:
    from playwright.sync_api import sync_playwright

    app, url, allow = served
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            # First view: styled page; an inbound key only on an explicit POST.
            assert page.goto(url).status == 200
            assert page.is_visible("#no-inbound-key")
            page.click("#generate-key")
            assert page.inner_text("#new-inbound-key").startswith("rsk_")
            assert page.eval_on_selector(
                "#save", "e => getComputedStyle(e).backgroundColor"
            ) not in ("", "rgba(0, 0, 0, 0)")
            assert page.inner_text("#inbound-url") == url + "inbound"

            # Save a write key pointing at the Segment stand-in; it shows masked.
            page.fill("#write_key", KEY)
            page.check("input[name=region][value=custom]")
            page.fill("#custom_api_host", segment.url)
            page.click("#save")
            page.wait_for_selector("text=Settings saved.")
            assert page.inner_text("#write-key-masked") == "••••51ab"
            assert KEY not in page.content()
            assert page.input_value("#write_key") == ""  # write-only

            # Bad input: an error next to the field, not a 500.
            page.fill("#trait_prefix", "Not Valid!")
            page.click("#save")
            assert "lowercase letters" in page.inner_text("#error-trait_prefix")
            page.goto(url)

            # Send a test event and read the stand-in's answer.
            page.click("#send-test")
            page.wait_for_selector("text=Segment answered 200 OK")
            assert [m["event"] for m in segment.messages] == ["Segment Test Event"]

            # A delivery fails (the stand-in answers 400 once) and shows in the log.
            segment.set_fault(status=400, times=1)
            send_completion(app, 1)
            run_worker(app, redis_url)
            page.goto(url)
            assert page.inner_text("#count-failed") == "1"
            assert "HTTP 400" in page.inner_text("#deliveries")

            # Retry it: it is sent.
            page.click("#retry-failed")
            page.wait_for_selector("text=1 failed delivery queued again.")
            run_worker(app, redis_url)
            page.goto(url)
            assert page.inner_text("#count-sent") == "1"
            assert page.inner_text("#count-failed") == "0"
            assert len(segment.messages) == 4  # the test track + identify/group/track

            # A POST without the CSRF token is refused (the session cookie is sent).
            refused = page.request.post(url + "retry-failed", form={})
            assert refused.status == 400
            refused = page.request.post(url, form={"write_key": "wk_forged_0000"})
            assert refused.status == 400
            page.goto(url)
            assert page.inner_text("#write-key-masked") == "••••51ab"

            # Without the guard's approval: 403.
            allow["admin"] = False
            assert page.goto(url).status == 403
        finally:
            browser.close()
