"""The example app's #16 features, used as a user would (headless Chromium, CLI)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import typing as t

import pytest
import requests
from example_app.history import HISTORY_SIZE

from .conftest import ROOT
from .conftest import launch_chromium
from .test_example_app import KEY
from .test_example_app import Demo
from .test_example_app import _start
from .test_example_app import _stop

pytestmark = pytest.mark.browser


def _calls(base: str) -> list[dict[str, t.Any]]:
    return t.cast(
        list[dict[str, t.Any]],
        requests.get(base + "/segment-standin/messages", timeout=5).json()["messages"],
    )


def _wait(check: t.Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def example(tmp_path: t.Any) -> t.Iterator[str]:
    """The demo with its seeded history; the base URL."""
    demo: Demo = _start(tmp_path, history=True)
    try:
        yield demo.url
    finally:
        _stop(demo)


def test_lifecycle_backfill_chart_and_forget(example: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(example + "/")
            page.click("#login-ann")

            # Lifecycle events: off until the admin ticks the box.
            page.click("#nav-settings")
            page.fill("#write_key", KEY)  # pasted, as the setup says
            page.check("#lifecycle_events")
            page.click("#save")
            page.wait_for_selector("text=Settings saved.")
            page.goto(example + "/")
            page.click("#survey-nps-2026")  # shown
            page.click("#dismiss-survey")  # dismissed
            page.wait_for_selector("text=dismissed. Maybe later!")

            def lifecycle() -> set[str]:
                return {
                    c.get("event", "")
                    for c in _calls(example)
                    if c.get("event") in ("Survey Shown", "Survey Dismissed")
                }

            _wait(lambda: lifecycle() == {"Survey Shown", "Survey Dismissed"}, "events")
            page.goto(example + "/segment-standin/")
            calls = page.inner_text("#calls")
            assert "Survey Shown" in calls and "Survey Dismissed" in calls

            # Backfill of the seeded history from the settings page.
            page.goto(example + "/integrations/segment/")
            page.fill("#days", "90")
            page.click("#start-backfill")
            page.wait_for_selector("text=Backfill of the last 90 days started")

            def backfilled() -> int:
                return len(
                    {
                        c["properties"]["response_id"]
                        for c in _calls(example)
                        if c["type"] == "track"
                        and str(c["properties"].get("response_id", "")).startswith(
                            "past-"
                        )
                    }
                )

            _wait(lambda: backfilled() == HISTORY_SIZE, "the backfill")
            page.reload()
            _wait(
                lambda: (
                    page.reload() is not None
                    and page.inner_text("#backfill-status") == "done"
                ),
                "the backfill's progress",
            )
            assert page.inner_text("#backfill-recorded") == str(HISTORY_SIZE)

            # The chart: this hour's bar holds what was sent.
            bars = page.locator("#chart-hourly .rs-bar")
            assert bars.count() == 24
            assert int(bars.last.get_attribute("data-total") or 0) >= HISTORY_SIZE
            assert page.is_visible("#latency-p50")
        finally:
            browser.close()


def test_backfill_and_forget_user_from_the_cli(
    tmp_path: t.Any, redis_url: str, redis_conn: t.Any
) -> None:
    """``redis_conn``: the session's Redis is flushed after (the backfill's
    send chain waits there, for no worker of this test)."""
    env = {
        **os.environ,
        "EXAMPLE_INSTANCE_PATH": str(tmp_path / "instance"),
        "REDIS_URL": redis_url,
        # Nothing is sent here (no worker): a key from the environment suffices.
        "SEGMENT_WRITE_KEY": KEY,
    }

    def flask(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flask", "--app", "example_app.app:create_app"]
            + ["refiner-segment", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    backfill = flask("backfill", "--since", "2000-01-01")
    assert backfill.returncode == 0, backfill.stderr
    assert f"{HISTORY_SIZE} recorded" in backfill.stdout
    result = flask("forget-user", "bob")
    assert result.returncode == 0, result.stderr
    assert f"Forgot user 'bob': {HISTORY_SIZE // 3} deliveries emptied" in result.stdout
    again = flask("forget-user", "bob")
    assert "Forgot user 'bob': 0 deliveries emptied" in again.stdout
