"""The example app, started as the README starts it, walked in headless Chromium."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest
import requests
from flask_refiner_segment.testing.embedded_redis import free_port

from .conftest import ROOT
from .conftest import launch_chromium

SCREENSHOTS = ROOT / "docs"

pytestmark = pytest.mark.browser


@pytest.fixture
def example(tmp_path: Path) -> t.Iterator[str]:
    """``python -m example_app`` (embedded Redis, worker, app) on a free port."""
    port = free_port()
    env = {
        **os.environ,
        "EXAMPLE_PORT": str(port),
        "EXAMPLE_INSTANCE_PATH": str(tmp_path / "instance"),
    }
    env.pop("REDIS_URL", None)  # the example starts its own Redis
    proc = subprocess.Popen(
        [sys.executable, "-m", "example_app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(base + "/", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None, "the example app exited"
                assert time.monotonic() < deadline, "the example app did not start"
                time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C stops everything it started
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_survey_reaches_the_standin_within_a_second(example: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.goto(example + "/")
        page.click("#login-ann")
        page.click("#survey-product-feedback")
        page.check("input[name=role][value=Engineer]")
        page.check("input[name=tools][value=Segment]")
        page.check("input[name=tools][value=Jira]")
        page.check("input[name=rating][value='4']")
        page.check("input[name='Team Size'][value='11-50']")
        page.fill("textarea[name=feedback]", "Love the Segment sync!")
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "survey.png"), full_page=True)
        page.click("#submit-survey")
        submitted = time.monotonic()
        page.wait_for_selector("text=Thanks!")
        calls: list[dict[str, t.Any]] = []
        while time.monotonic() - submitted < 5:
            calls = requests.get(example + "/segment-standin/messages").json()[
                "messages"
            ]
            if len(calls) >= 3:
                break
            time.sleep(0.02)
        arrived = time.monotonic() - submitted
        assert sorted(c["type"] for c in calls) == ["group", "identify", "track"]
        assert arrived < 1.0, f"the calls took {arrived:.2f}s"
        track = next(c for c in calls if c["type"] == "track")
        assert track["properties"]["refiner_tools"] == ["Segment", "Jira"]
        assert track["context"]["groupId"] == "acct-acme"
        page.click("#nav-standin")
        page.wait_for_selector("#calls")
        assert "3 calls received" in page.inner_text("#summary")
        page.screenshot(path=str(SCREENSHOTS / "standin.png"), full_page=True)
        # Segment -> this app: the segment-targeted survey appears for Ann only.
        page.goto(example + "/")
        assert page.locator("#survey-export-feedback").count() == 0
        page.click("#nav-profile")
        page.click("#inbound-demo")
        page.wait_for_selector("text=HTTP 200")
        assert "Report Exported" in page.inner_text("#events")
        page.goto(example + "/")
        assert page.locator("#survey-export-feedback").count() == 1
        page.click("#nav-settings")
        page.wait_for_selector("#deliveries")
        assert "sent" in page.inner_text("#deliveries")
        browser.close()
