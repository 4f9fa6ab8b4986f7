"""How segment queries are built: one user's query is kept, a count joins sets.

The answers themselves are checked against a Python reference in
tests/test_segments_property.py, on both databases.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
from flask import Flask
from flask_refiner_segment.segments import compile as segment_compile
from flask_refiner_segment.segments import service as api
from flask_refiner_segment.state import get_state

from .inbound_support import close_app
from .test_segments import cond
from .test_segments import insert_data
from .test_segments import make_seg_app


@pytest.fixture
def seg_app(database_url: str) -> t.Iterator[Flask]:
    app = make_seg_app(database_url)
    yield app
    close_app(app)


def test_kept_member_query_follows_the_data_and_the_clock(seg_app, monkeypatch):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # naive UTC
    insert_data(
        seg_app,
        {"u1": {}, "u2": {}},
        events=[("u1", "Signed In", {}, now - dt.timedelta(days=10))],
    )
    rules = cond("event", name="Signed In", op="at_least", count=1, within_days=30)
    with seg_app.app_context():
        assert api.is_member("u1", rules)
        assert not api.is_member("u2", rules)
        kept = dict(get_state().local("segment_member_queries", dict))
    assert len(kept) == 1

    insert_data(seg_app, {}, events=[("u2", "Signed In", {}, now)])
    with seg_app.app_context():
        assert api.is_member("u2", rules)

    # 25 days later u1's event is 35 days old: out of the window.
    later = now + dt.timedelta(days=25)
    monkeypatch.setattr(api, "utcnow", lambda: later)
    monkeypatch.setattr(segment_compile, "utcnow", lambda: later)
    with seg_app.app_context():
        assert not api.is_member("u1", rules)
        assert api.is_member("u2", rules)
        assert api.count(rules) == 1
        assert get_state().local("segment_member_queries", dict) == kept


def test_count_and_is_member_agree_on_every_event_form(seg_app):
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    day = dt.timedelta(days=1)
    events = []
    for user, totals in {"u1": [60, 70, 5], "u2": [60], "u3": [5, 5, 5, 5]}.items():
        events += [(user, "Order", {"total": n}, now - day) for n in totals]
    insert_data(seg_app, {"u1": {}, "u2": {}, "u3": {}, "u4": {}}, events=events)
    where = {"key": "total", "op": "gte", "value": 50}
    expected = {
        ("at_least", 1, False): {"u1", "u2", "u3"},
        ("at_least", 2, False): {"u1", "u3"},
        ("at_least", 2, True): {"u1"},
        ("at_least", 3, True): set(),
        ("at_most", 0, True): {"u3", "u4"},
        ("at_most", 1, True): {"u2", "u3", "u4"},
        ("at_most", 1, False): {"u2", "u4"},
        ("at_most", 3, False): {"u1", "u2", "u4"},
    }
    with seg_app.app_context():
        for (op, n, filtered), members in expected.items():
            c = {"name": "Order", "op": op, "count": n, "within_days": 7}
            rules = cond("event", **c, **({"where": where} if filtered else {}))
            found = {u for u in ("u1", "u2", "u3", "u4") if api.is_member(u, rules)}
            assert found == members, (op, n, filtered)
            assert api.count(rules) == len(members), (op, n, filtered)
            assert set(api.members(rules)) == members, (op, n, filtered)
