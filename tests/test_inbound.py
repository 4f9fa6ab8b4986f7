"""The inbound route: Segment payloads of every type, replay, order, alias and
delete.

Runs on SQLite and PostgreSQL (the ``database_url`` fixture).

The ``inbound_app`` fixture and the helpers live here; the other parts import
them: auth in test_inbound_auth.py, answers in test_inbound_answers.py, storage
details and retention in test_inbound_storage.py.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
from flask import Flask
from flask_refiner_segment.inbound import queries as api

from .inbound_support import alias
from .inbound_support import close_app
from .inbound_support import counts
from .inbound_support import delete
from .inbound_support import group
from .inbound_support import identify
from .inbound_support import make_app
from .inbound_support import page
from .inbound_support import post
from .inbound_support import screen
from .inbound_support import track

USER = "97980cfea0067"
GROUP = "0e8c78ea9d97a7b8185e8632"


@pytest.fixture
def inbound_app(database_url: str) -> t.Iterator[Flask]:
    app = make_app(database_url)
    yield app
    close_app(app)


def profile(app: Flask, user_id: str = USER, workspace_id: str | None = None) -> t.Any:
    with app.app_context():
        return api.get_profile(user_id, workspace_id)


def every_type() -> list[dict[str, t.Any]]:
    return [identify(), group(), track(), page(), screen()]


# -- storing and reading -------------------------------------------------------


def test_every_type_one_request_each_is_stored_and_readable(inbound_app):
    for message in every_type():
        response = post(inbound_app, message)
        assert response.status_code == 200, response.json
        assert response.json == {
            "stored": 1,
            "duplicates": 0,
            "ignored": 0,
            "unsupported": 0,
        }

    p = profile(inbound_app)
    assert p["traits"]["email"] == "peter@example.com"
    assert p["traits"]["logins"] == 5
    assert p["traits"]["address"]["city"] == "San Francisco"
    assert p["trait_times"]["email"] == dt.datetime(2026, 2, 23, 22, 28, 55, 111000)
    assert p["first_seen"] == dt.datetime(2026, 2, 23, 22, 28, 55, 111000)
    assert p["last_seen"] == dt.datetime(2026, 2, 23, 22, 32)
    [account] = p["accounts"]
    assert account["group_id"] == GROUP
    assert account["traits"] == {
        "name": "Initech",
        "industry": "Technology",
        "employees": 329,
        "plan": "enterprise",
        "total billed": 830,
    }
    [event] = p["events"]
    assert event["name"] == "Registered"
    assert event["properties"]["items"] == [{"sku": "a-1"}]
    assert event["timestamp"] == dt.datetime(2026, 2, 23, 22, 30)
    assert event["message_id"] == "ajs-track-1"
    with inbound_app.app_context():
        views = api.recent_views(USER)
        acct = api.get_account(GROUP)
        assert api.recent_events(USER, limit=5) == p["events"]
    assert [(v["kind"], v["name"], v["category"]) for v in views] == [
        ("screen", "Home", None),
        ("page", "Analytics Academy", "Docs"),
    ]
    assert views[1]["properties"]["path"] == "/academy/"
    assert acct["user_ids"] == [USER]


def test_batch_and_array_bodies(inbound_app):
    response = post(inbound_app, {"batch": every_type()})
    assert response.json == {
        "stored": 5,
        "duplicates": 0,
        "ignored": 0,
        "unsupported": 0,
    }
    more = [track(message_id=f"array-{i}", event=f"E{i}") for i in range(3)]
    response = post(inbound_app, more)
    assert response.status_code == 200
    assert response.json["stored"] == 3
    with inbound_app.app_context():
        assert len(api.recent_events(USER)) == 4
        assert len(api.recent_events(USER, limit=2)) == 2


def test_replay_stores_nothing_twice(inbound_app):
    batch = every_type()
    assert post(inbound_app, {"batch": batch}).json["stored"] == 5
    before = counts(inbound_app)
    for message in batch:
        response = post(inbound_app, message)
        assert response.status_code == 200
        assert response.json == {
            "stored": 0,
            "duplicates": 1,
            "ignored": 0,
            "unsupported": 0,
        }
    assert post(inbound_app, {"batch": batch}).json["duplicates"] == 5
    assert counts(inbound_app) == before


def test_duplicate_within_one_request(inbound_app):
    response = post(inbound_app, [track(), track()])
    assert response.json == {
        "stored": 1,
        "duplicates": 1,
        "ignored": 0,
        "unsupported": 0,
    }
    assert counts(inbound_app)["refiner_segment_event"] == 1


def test_message_without_message_id_gets_a_derived_one(inbound_app):
    first = track()
    del first["messageId"]
    again = dict(
        first, sentAt="2026-02-23T23:00:00.000Z"
    )  # a retry: only sentAt differs
    assert post(inbound_app, first).json["stored"] == 1
    assert post(inbound_app, again).json["duplicates"] == 1
    other = dict(first, event="Another")
    assert post(inbound_app, other).json["stored"] == 1
    with inbound_app.app_context():
        ids = [e["message_id"] for e in api.recent_events(USER)]
    assert all(i.startswith("sha256:") and len(i) == 71 for i in ids)


def test_long_message_id_is_hashed(inbound_app):
    message = track(message_id="m" * 400)
    assert post(inbound_app, message).json["stored"] == 1
    assert post(inbound_app, message).json["duplicates"] == 1


def test_messages_without_user_id_are_ignored(inbound_app):
    anonymous = [identify(user_id=None), track(user_id=None), page(user_id=None)]
    anonymous.append(dict(track(message_id="empty"), userId=""))
    response = post(inbound_app, {"batch": [*anonymous, track(message_id="known")]})
    assert response.json == {
        "stored": 1,
        "duplicates": 0,
        "ignored": 4,
        "unsupported": 0,
    }
    assert counts(inbound_app)["refiner_segment_event"] == 1


def test_numeric_user_id_and_snake_case_keys(inbound_app):
    message = {
        "type": "identify",
        "user_id": 42,
        "message_id": "snake",
        "traits": {"a": 1},
    }
    assert post(inbound_app, message).json["stored"] == 1
    assert profile(inbound_app, "42")["traits"] == {"a": 1}


# -- order ---------------------------------------------------------------------


def test_out_of_order_identifies_keep_the_newest_value(inbound_app):
    newer = identify(
        "new", at="2026-03-02T10:00:00Z", traits={"plan": "pro", "seats": 10}
    )
    older = identify(
        "old",
        at="2026-03-01T10:00:00Z",
        traits={"plan": "free", "seats": 1, "role": "dev"},
    )
    assert post(inbound_app, newer).status_code == 200
    assert post(inbound_app, older).status_code == 200
    p = profile(inbound_app)
    assert p["traits"] == {"plan": "pro", "seats": 10, "role": "dev"}
    assert p["first_seen"] == dt.datetime(2026, 3, 1, 10)
    assert p["last_seen"] == dt.datetime(2026, 3, 2, 10)
    # In one batch, in any order.
    batch = [
        identify("b2", at="2026-03-05T00:00:02Z", traits={"plan": "enterprise"}),
        identify("b1", at="2026-03-05T00:00:01Z", traits={"plan": "team"}),
    ]
    post(inbound_app, {"batch": batch})
    assert profile(inbound_app)["traits"]["plan"] == "enterprise"
    # Group traits follow the same rule.
    post(
        inbound_app, group("g-new", at="2026-03-02T00:00:00Z", traits={"plan": "gold"})
    )
    post(inbound_app, group("g-old", at="2026-03-01T00:00:00Z", traits={"plan": "tin"}))
    assert profile(inbound_app)["accounts"][0]["traits"] == {"plan": "gold"}


def test_timestamp_falls_back_and_future_is_clamped(inbound_app):
    a = track("fallback-original", event="A")
    del a["timestamp"]
    a["originalTimestamp"] = "2026-01-01T01:00:00+01:00"
    b = track("fallback-received", event="B")
    for key in ("timestamp", "originalTimestamp"):
        del b[key]
    b["receivedAt"] = "2026-01-02T00:00:00Z"
    c = {"type": "track", "userId": USER, "event": "C", "messageId": "no-times"}
    d = track("future", event="D", at="2999-01-01T00:00:00Z")
    before = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert post(inbound_app, [a, b, c, d]).json["stored"] == 4
    with inbound_app.app_context():
        times = {e["name"]: e["timestamp"] for e in api.recent_events(USER)}
    assert times["A"] == dt.datetime(2026, 1, 1, 0, 0)
    assert times["B"] == dt.datetime(2026, 1, 2)
    assert before <= times["C"] <= before + dt.timedelta(minutes=1)
    assert before <= times["D"] <= before + dt.timedelta(minutes=1)


# -- alias and delete ------------------------------------------------------------


def test_alias_merges_previous_id_into_user_id(inbound_app):
    anon = "anon-7f3"
    post(
        inbound_app,
        [
            identify(
                "a1",
                anon,
                at="2026-01-01T00:00:00Z",
                traits={"plan": "free", "utm": "ad"},
            ),
            identify("a2", "u-real", at="2026-01-02T00:00:00Z", traits={"plan": "pro"}),
            track("a3", anon, event="Viewed Pricing", at="2026-01-01T00:01:00Z"),
            page("a4", anon, at="2026-01-01T00:02:00Z"),
            group("a5", anon, "acct-1", "2026-01-01T00:03:00Z", {"name": "A"}),
        ],
    )
    response = post(inbound_app, alias("a6", "u-real", anon, at="2026-01-03T00:00:00Z"))
    assert response.json["stored"] == 1
    assert profile(inbound_app, anon) is None
    p = profile(inbound_app, "u-real")
    assert p["traits"] == {"plan": "pro", "utm": "ad"}
    assert p["first_seen"] == dt.datetime(2026, 1, 1)
    assert p["last_seen"] == dt.datetime(2026, 1, 3)
    assert [e["name"] for e in p["events"]] == ["Viewed Pricing"]
    assert [a["group_id"] for a in p["accounts"]] == ["acct-1"]
    with inbound_app.app_context():
        assert len(api.recent_views("u-real")) == 1
    # Aliasing to itself, or without userId, changes nothing.
    assert post(inbound_app, alias("a7", "u-real", "u-real")).json["stored"] == 1
    assert post(inbound_app, alias("a8", None, "u-real")).json["ignored"] == 1
    assert profile(inbound_app, "u-real")["traits"] == p["traits"]


def test_delete_erases_the_user_and_replays_stay_idempotent(inbound_app):
    other = identify("other", user_id="someone-else")
    post(inbound_app, {"batch": [*every_type(), other]})
    assert post(inbound_app, delete()).json["stored"] == 1
    assert profile(inbound_app) is None
    with inbound_app.app_context():
        assert api.recent_events(USER) == []
        assert api.recent_views(USER) == []
        assert api.get_account(GROUP)["user_ids"] == []
    assert profile(inbound_app, "someone-else") is not None
    # Segment retrying the old messages stores nothing again.
    assert post(inbound_app, {"batch": every_type()}).json["duplicates"] == 5
    assert profile(inbound_app) is None


def test_batch_keeps_its_order_around_delete(inbound_app):
    batch = [track("t1", event="Before"), delete("d1"), track("t2", event="After")]
    assert post(inbound_app, batch).json["stored"] == 3
    with inbound_app.app_context():
        assert [e["name"] for e in api.recent_events(USER)] == ["After"]
