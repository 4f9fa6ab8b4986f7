"""Delivery insight (#16, part 3): figures, the SVG chart, the page, ``status``."""

from __future__ import annotations

import datetime as dt
import json
import re

from flask_refiner_segment.core.chart import nice_ceiling
from flask_refiner_segment.core.chart import stacked_bars
from flask_refiner_segment.outbound import insight

from .conftest import cli_environment
from .conftest import drain
from .conftest import flask_cli
from .conftest import send_completion
from .helpers import statuses
from .insight_support import seed
from .test_views import URL
from .test_views import allow

NOW = dt.datetime(2026, 11, 28, 10, 30)


def test_nice_ceiling():
    assert [nice_ceiling(v) for v in (0, 1, 2, 3, 6, 11, 99, 101, 4000)] == [
        1, 1, 2, 5, 10, 20, 100, 200, 5000
    ]  # fmt: skip


def test_chart_is_escaped_and_says_when_empty():
    svg = stacked_bars(
        [{"sent": 0}], ["<b>"], title="T & <x>", element_id="c", empty_text="Nothing."
    )
    assert "<b>" not in svg and "&lt;b&gt;" in svg
    assert "T &amp; &lt;x&gt;" in svg
    assert 'class="rs-chart-empty">Nothing.</text>' in svg
    full = stacked_bars(
        [{"sent": 3, "failed": 1}, {"skipped": 2}],
        ["a", "b"],
        title="t",
        element_id="c",
    )
    assert "rs-chart-empty" not in full
    assert re.findall(r'data-series="(\w+)" data-count="(\d+)"', full) == [
        ("sent", "3"),
        ("failed", "1"),
        ("skipped", "2"),
    ]
    assert "<title>a: 3 sent, 1 failed, 0 skipped</title>" in full


def test_figures_count_per_hour_and_day(app):
    rows = [("sent", 0.1, 1.0 + i) for i in range(100)]  # latencies 1..100 s
    rows += [("failed", 2.2, 5), ("failed", 2.4, 5), ("skipped", 23.5, 0)]
    rows += [("sent", 24 * 3, 2), ("sent", 24 * 40, 2)]  # 3 days ago; too old
    rows += [("pending", 0.1, 0)]  # not finished: not counted
    seed(app, rows, now=NOW)
    seed(app, [("sent", 0.1, 1)], workspace_id="other", now=NOW)
    state = app.extensions["refiner_segment"]
    with app.app_context():
        figures = insight.figures(state, "default", now=NOW)
        everyone = insight.figures(state, None, now=NOW)
    hourly, daily = figures["hourly"], figures["daily"]
    assert len(hourly) == 24 and len(daily) == 30
    assert hourly[-1] == {
        "start": "2026-11-28T10:00:00Z", "sent": 100, "failed": 0, "skipped": 0
    }  # fmt: skip
    assert hourly[-3]["start"] == "2026-11-28T08:00:00Z"
    assert hourly[-3]["failed"] == 2
    assert hourly[0]["start"] == "2026-11-27T11:00:00Z"
    assert hourly[0]["skipped"] == 1
    assert insight.totals(hourly) == {"sent": 100, "failed": 2, "skipped": 1}
    assert daily[-1]["start"] == "2026-11-28T00:00:00Z"
    assert insight.totals(daily) == {"sent": 101, "failed": 2, "skipped": 1}
    assert daily[-4]["sent"] == 1  # three days ago
    assert figures["latency"] == {"count": 100, "p50": 50.0, "p99": 99.0}
    assert everyone["latency"]["count"] == 101


def test_empty_figures(app):
    state = app.extensions["refiner_segment"]
    with app.app_context():
        figures = insight.figures(state, "default")
    assert insight.totals(figures["hourly"]) == {"sent": 0, "failed": 0, "skipped": 0}
    assert figures["latency"] == {"count": 0, "p50": None, "p99": None}


def test_page_shows_charts_empty_and_all_failing(app):
    allow(app)
    client = app.test_client()
    html = client.get(URL).get_data(as_text=True)
    assert 'id="chart-hourly"' in html and 'id="chart-daily"' in html
    assert "No deliveries in the last 24 hours." in html
    assert 'id="latency-none"' in html
    assert 'id="all-failing"' not in html

    seed(app, [("failed", 1, 3), ("failed", 5, 3)])
    html = client.get(URL).get_data(as_text=True)
    assert 'id="all-failing"' in html
    assert "Every delivery in the last 24 hours failed" in html

    seed(app, [("sent", 0.2, 0.5), ("sent", 0.3, 1.5)])
    html = " ".join(client.get(URL).get_data(as_text=True).split())
    assert 'id="all-failing"' not in html
    assert "p50 0.50 s" in html and "p99 1.50 s" in html
    assert "Last 24 hours: 2 sent, 2 failed, 0 skipped." in html


def test_status_reports_the_same_figures(app, app_config, segment, redis_url):
    for n in range(5):
        send_completion(app, n)
    drain(app, redis_url, lambda: statuses(app) == {"sent": 5})
    env = cli_environment(app_config)
    result = flask_cli(["refiner-segment", "status", "--json"], env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["sent"] == 5
    figures = data["insight"]
    assert insight.totals(figures["hourly"])["sent"] == 5
    assert figures["latency"]["count"] == 5
    assert 0 <= figures["latency"]["p50"] <= figures["latency"]["p99"]
    text = flask_cli(["refiner-segment", "status"], env).stdout
    assert "last 24 h 5 sent, 0 failed, 0 skipped" in text
    assert "(5 sent in the last hour)" in text
