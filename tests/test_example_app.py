"""The example app, started as the README starts it, walked in headless Chromium
as a newcomer follows the setup: paste a key, save, send a test event, answer
a survey, see the calls; then Segment -> the app, a segment built with the
rule builder, the error pages and the CLI against the running demo."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import psutil
import pytest
import redis
import requests
from flask_refiner_segment.testing.embedded_redis import free_port

from .conftest import ROOT
from .conftest import launch_chromium

SCREENSHOTS = ROOT / "docs"
KEY = "demo-write-key-7e1d"
SCHEDULER_LOCK = "rq:scheduler-lock:refiner_segment"

pytestmark = pytest.mark.browser


class Demo(t.NamedTuple):
    url: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    instance: Path


def _start(tmp_path: Path, *, history: bool = False) -> Demo:
    """Start the demo; without ``history`` no past responses are seeded (a
    newcomer's first answers, not "already answered")."""
    port = free_port()
    instance = tmp_path / "instance"
    env = {
        **os.environ,
        "EXAMPLE_PORT": str(port),
        "EXAMPLE_INSTANCE_PATH": str(instance),
        "EXAMPLE_SEED_HISTORY": "1" if history else "0",
    }
    for name in ("REDIS_URL", "SEGMENT_WRITE_KEY", "EXAMPLE_INBOUND_API_KEY"):
        env.pop(name, None)  # the demo starts its own Redis, offline
    proc = subprocess.Popen(
        [sys.executable, "-m", "example_app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(base + "/", timeout=1)
            return Demo(base, proc, env, instance)
        except requests.ConnectionError:
            assert proc.poll() is None, "the example app exited"
            assert time.monotonic() < deadline, "the example app did not start"
            time.sleep(0.2)


def _stop(demo: Demo) -> None:
    if demo.proc.poll() is None:
        os.killpg(demo.proc.pid, signal.SIGINT)  # Ctrl-C stops everything
    try:
        demo.proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(demo.proc.pid, signal.SIGKILL)
        demo.proc.wait()


@pytest.fixture
def example(tmp_path: Path) -> t.Iterator[Demo]:
    """``python -m example_app`` (embedded Redis, worker, app) on a free port."""
    demo = _start(tmp_path)
    try:
        yield demo
    finally:
        _stop(demo)


def _calls(base: str, count: int) -> list[dict[str, t.Any]]:
    """The stand-in's calls once there are ``count`` (a minute at most)."""
    deadline = time.monotonic() + 60
    while True:
        calls = requests.get(base + "/segment-standin/messages").json()["messages"]
        if len(calls) >= count or time.monotonic() > deadline:
            return t.cast("list[dict[str, t.Any]]", calls)
        time.sleep(0.05)


def _flask(demo: Demo, *args: str) -> subprocess.CompletedProcess[str]:
    """``flask --app example_app ...`` as the README says, in the demo's folder."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "example_app", *args],
        cwd=ROOT,
        env={k: v for k, v in demo.env.items() if k != "EXAMPLE_PORT"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _fits(page: t.Any) -> bool:
    """Nothing is wider than the window (no horizontal scrolling)."""
    return bool(
        page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    )


def test_newcomer_walk(example: Demo) -> None:
    from playwright.sync_api import expect
    from playwright.sync_api import sync_playwright

    base = example.url
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(base + "/")
            page.click("#login-ann")

            # 1. The settings page, in the app's layout, is not locked: the
            # stand-in is the custom data plane, the key is for us to paste.
            page.click("#nav-settings")
            # The click returns once the navigation commits, before the new
            # page is parsed (#app-nav is on the old page too): wait for it.
            expect(page.locator("#nav-settings")).to_have_attribute(
                "aria-current", "page"
            )
            page.wait_for_load_state()
            expect(page.locator("#app-nav")).to_be_visible()
            expect(page.locator("#no-key-banner")).to_be_visible()
            assert page.is_checked("input[name=region][value=custom]")
            assert page.input_value("#custom_api_host").endswith("/segment-standin")
            assert page.is_enabled("#write_key")
            page.fill("#write_key", KEY)
            page.click("#save")
            expect(page.locator(".flash.success")).to_contain_text("Settings saved.")
            assert page.inner_text("#write-key-masked") == "••••7e1d"
            assert KEY not in page.content()
            page.click("#send-test")
            expect(page.locator(".flash.success")).to_contain_text(
                "Segment answered 200 OK"
            )
            (test_event,) = _calls(base, 1)
            assert test_event["event"] == "Segment Test Event"
            assert test_event["properties"]["test"] is True

            # ... complete a survey, see the three calls.
            page.click("#nav-surveys")
            page.click("#survey-product-feedback")
            expect(page.locator("#submit-survey")).to_be_visible()  # parsed
            assert page.locator("#already-answered").count() == 0
            page.check("input[name=role][value=Engineer]")
            page.check("input[name=tools][value=Segment]")
            page.check("input[name=tools][value=Jira]")
            page.check("input[name=rating][value='4']")
            page.check("input[name='Team Size'][value='11-50']")
            page.fill("textarea[name=feedback]", "Love the Segment sync!")
            page.screenshot(path=str(SCREENSHOTS / "survey.png"), full_page=True)
            page.click("#submit-survey")
            expect(page.locator(".flash")).to_contain_text("Thanks!")
            calls = _calls(base, 4)[1:]
            assert sorted(c["type"] for c in calls) == ["group", "identify", "track"]
            track = next(c for c in calls if c["type"] == "track")
            assert track["event"] == "Survey Completed"
            assert track["properties"]["refiner_tools"] == ["Segment", "Jira"]
            assert track["context"]["groupId"] == "acct-acme"
            page.click("#nav-standin")
            page.wait_for_selector("#calls")
            assert "4 calls received" in page.inner_text("#summary")
            page.screenshot(path=str(SCREENSHOTS / "standin.png"), full_page=True)
            page.click("#standin-nav >> text=Segment settings")
            expect(page.locator("#source")).to_be_visible()

            # 4. A survey already answered says so.
            page.goto(base + "/")
            expect(page.locator("#answered-product-feedback")).to_contain_text("UTC")
            page.click("#survey-product-feedback")
            expect(page.locator("#already-answered")).to_contain_text(
                "You already answered this survey"
            )

            # Segment -> this app: the key is generated on the settings page
            # and pasted where Segment would hold it.
            page.click("#nav-profile")
            page.click("#inbound-demo")
            expect(page.locator(".flash.error")).to_contain_text(
                "Paste the inbound API key first"
            )
            page.click("#nav-settings")
            page.click("#generate-key")
            inbound_key = page.inner_text("#new-inbound-key")
            expect(page.locator("#done")).to_contain_text("Inbound API key generated.")
            page.click("#nav-profile")
            page.fill("#api_key", inbound_key)
            page.click("#inbound-demo")
            flash = page.locator(".flash.success")
            expect(flash).to_contain_text("HTTP 200, messages 13 stored")
            assert "{" not in flash.inner_text()  # words, not a Python dict
            assert "Report Exported" in page.inner_text("#events")
            assert "UTC" in page.inner_text("#events")
            assert "Pricing" in page.inner_text("#views")
            assert "plan" in page.inner_text("#traits")
            assert '"plan"' not in page.inner_text("#traits")  # a table, not JSON
            # The segment-targeted survey now shows for Ann.
            page.goto(base + "/")
            assert page.locator("#survey-export-feedback").count() == 1

            # Rotating asks first; cancelled, nothing changes.
            page.click("#nav-settings")
            page.once("dialog", lambda dialog: dialog.dismiss())
            page.click("#rotate-key")
            assert page.locator("#new-inbound-key").count() == 0
            page.once("dialog", lambda dialog: dialog.accept())
            page.click("#rotate-key")
            expect(page.locator("#done")).to_contain_text("rotated")
            assert page.inner_text("#new-inbound-key") != inbound_key
            page.click("#nav-profile")
            page.fill("#api_key", inbound_key)
            page.click("#inbound-demo")
            expect(page.locator(".flash.error")).to_contain_text("HTTP 401")

            # 5. The paused banner says its reason once.
            requests.post(
                base + "/segment-standin/faults", json={"status": 401, "times": 1}
            )
            page.click("#nav-settings")
            page.click("#send-test")
            banner = page.locator("#paused-banner")
            expect(banner).to_be_visible()
            text = banner.inner_text()
            assert text.lower().count("rejected") == 1, text
            assert text.lower().count("unauthorized") == 1, text
            page.click("#send-test")  # accepted: the pause is lifted
            expect(page.locator("#paused-banner")).to_have_count(0)
            # The delivery log fits at 1280 px: ids on one line, every column seen.
            scroll = page.locator("#delivery-log .rs-scroll")
            assert scroll.evaluate("e => e.scrollWidth <= e.clientWidth")
            assert page.locator("#deliveries .rs-id").first.evaluate(
                "e => e.getBoundingClientRect().height < 30"
            )
            assert _fits(page)
            page.screenshot(path=str(SCREENSHOTS / "settings.png"), full_page=True)

            # 3. A segment built with the rule builder.
            page.click("#nav-segments")
            page.click("#new-segment")
            page.fill("#name", "Pro exporters")
            page.select_option("#row-0 .rs-f-kind", "trait")
            page.fill("#row-0 .rs-f-key", "plan")
            page.select_option("#row-0 .rs-f-op", "eq")
            page.fill("#row-0 .rs-f-value", "pro")
            expect(page.locator("#preview-count")).to_have_text("1")
            expect(page.locator("#preview-sample")).to_have_text("ann")
            page.click("#add-condition")
            page.select_option("#row-1 .rs-f-kind", "event")
            assert page.is_visible("#row-1 .rs-f-days")
            assert not page.is_visible("#row-1 .rs-f-survey")
            assert page.input_value("#row-1 .rs-f-op") == "at_least"
            page.fill("#row-1 .rs-f-key", "Report Exported")
            page.fill("#row-1 .rs-f-value", "many")
            expect(page.locator("#errors-1 li")).to_have_text(
                ["'count' must be an integer from 0 to 2147483647"]
            )
            expect(page.locator("#errors-0 li")).to_have_count(0)
            page.fill("#row-1 .rs-f-value", "3")
            page.fill("#row-1 .rs-f-days", "30")
            expect(page.locator("#errors-1 li")).to_have_count(0)
            expect(page.locator("#preview-count")).to_have_text("1")
            page.click("#add-group")
            page.select_option("#row-2\\.0 .rs-f-kind", "nps_group")
            assert not page.is_visible("#row-2\\.0 .rs-f-op")
            page.fill("#row-2\\.0 .rs-f-value", "detractor")
            expect(page.locator("#preview-count")).to_have_text("0")
            page.click("#remove-2")
            expect(page.locator("#group-2")).to_have_count(0)
            expect(page.locator("#preview-count")).to_have_text("1")
            page.click("#json-view summary")
            expect(page.locator("#rules-json")).to_contain_text('"Report Exported"')
            page.screenshot(path=str(SCREENSHOTS / "segments.png"), full_page=True)
            page.click("#save-button")
            expect(page.locator(".flash.success")).to_contain_text(
                "Segment “Pro exporters” created."
            )
            row = page.locator("tr", has_text="Pro exporters")
            expect(row.locator(".rs-count")).to_have_text("1")

            # Deleting asks first, then says what happened.
            page.once("dialog", lambda dialog: dialog.dismiss())
            row.locator("button").click()
            expect(page.locator("tr", has_text="Pro exporters")).to_have_count(1)
            page.once("dialog", lambda dialog: dialog.accept())
            row.locator("button").click()
            expect(page.locator(".flash.success")).to_contain_text(
                "Segment “Pro exporters” deleted."
            )
            expect(page.locator("tr", has_text="Pro exporters")).to_have_count(0)

            # 5. A long segment name does not widen the page.
            page.click("#new-segment")
            page.fill("#name", "L" * 250)
            page.fill("#row-0 .rs-f-key", "plan")
            page.fill("#row-0 .rs-f-value", "pro")
            page.click("#save-button")
            expect(page.locator(".flash.success")).to_contain_text("created")
            assert _fits(page)

            # 5. Sign out is on screen at phone width.
            page.set_viewport_size({"width": 375, "height": 700})
            box = page.locator("#sign-out").bounding_box()
            assert box is not None and box["x"] + box["width"] <= 375
            page.set_viewport_size({"width": 1280, "height": 900})

            # 4. Friendly 404 and 403 pages.
            response = page.goto(base + "/surveys/no-such-survey")
            assert response is not None and response.status == 404
            expect(page.locator("#error-page")).to_contain_text("Page not found")
            page.click("#sign-out")
            page.click("#login-bob")
            response = page.goto(base + "/integrations/segment/")
            assert response is not None and response.status == 403
            expect(page.locator("#error-page")).to_contain_text("Admins only")

            # 4. The session expires while answering: the answers are kept.
            page.goto(base + "/surveys/nps-2026")
            page.check("input[name=how_likely][value='9']")
            page.fill("textarea[name=why]", "Fast support")
            context.clear_cookies()
            page.click("#submit-survey")
            expect(page.locator(".flash.warning")).to_contain_text(
                "your answers are kept"
            )
            page.click("#login-bob")
            assert page.is_checked("input[name=how_likely][value='9']")
            assert page.input_value("textarea[name=why]") == "Fast support"
            page.click("#submit-survey")
            expect(page.locator(".flash")).to_contain_text("Thanks!")
            bobs = [c for c in _calls(base, 7) if c.get("userId") == "bob"]
            assert sorted(c["type"] for c in bobs) == ["identify", "track"]
            identify = next(c for c in bobs if c["type"] == "identify")
            assert identify["traits"]["refiner_why"] == "Fast support"
        finally:
            browser.close()


def test_cli_finds_the_running_demo_and_sigterm_stops_it(tmp_path: Path) -> None:
    demo = _start(tmp_path)
    try:
        # Wait until the demo's worker holds its scheduler lock, in the Redis
        # that the demo names in its instance folder.
        url = (demo.instance / "demo-redis-url").read_text().strip()
        demo_redis = redis.Redis.from_url(url)
        deadline = time.monotonic() + 60
        while not demo_redis.exists(SCHEDULER_LOCK):
            assert time.monotonic() < deadline, "the demo's scheduler did not start"
            time.sleep(0.1)
        demo_redis.close()
        result = _flask(demo, "refiner-segment", "status")
        assert result.returncode == 0, result.stderr
        assert "scheduler running" in result.stdout  # the demo's own Redis
        assert re.search(
            r"host: http://127\.0\.0\.1:\d+/segment-standin", result.stdout
        )
        result = _flask(demo, "refiner-segment", "requeue")
        assert result.returncode == 0, result.stderr
        children = psutil.Process(demo.proc.pid).children(recursive=True)
        assert len(children) >= 2  # redis-server and the worker
        demo.proc.send_signal(signal.SIGTERM)  # the process only, not its group
        assert demo.proc.wait(30) == 0
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == []
        assert not (demo.instance / "demo-redis-url").exists()
        # Without the demo, the CLI says its Redis is not there.
        (demo.instance / "demo-redis-url").write_text("redis://127.0.0.1:1/0\n")
        result = _flask(demo, "refiner-segment", "requeue")
        assert result.returncode == 1
        assert "Redis is unavailable" in result.stderr
        assert "Traceback" not in result.stderr
    finally:
        _stop(demo)
