"""The inbound route's storage: the details the segment engine relies on (trait
projections, JSON paths, unstorable characters, large batches) and pruning
old events.

Runs on SQLite and PostgreSQL (the ``database_url`` fixture).

The ``inbound_app`` fixture is test_inbound.py's.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask_refiner_segment.inbound import queries as api

from .inbound_support import counts
from .inbound_support import identify
from .inbound_support import page
from .inbound_support import post
from .inbound_support import track
from .test_inbound import USER
from .test_inbound import inbound_app as inbound_app  # a fixture
from .test_inbound import profile

# -- storage details the segment engine relies on --------------------------------


def test_trait_projections_and_json_paths(inbound_app):
    traits = {
        "address": {"city": "San Francisco", "geo": {"lat": 37.7}},
        "logins": 5,
        "ltv": "1200.50",
        "zip": "094103",
        "vip": True,
        "nickname": None,
        "tags": ["a", "b"],
    }
    post(inbound_app, identify(traits=traits))
    model = inbound_app.extensions["refiner_segment"].tables.inbound.UserTrait
    db = inbound_app.extensions["test_db"]
    with inbound_app.app_context():
        rows = {
            r.key: (r.value_type, r.value_text, r.value_num)
            for r in db.session.execute(sa.select(model)).scalars()
        }
        city = db.session.execute(
            sa.select(model.user_id).where(
                # The dotted path "address.city": key "address", JSON path ("city",).
                model.key == "address",
                model.value[("city",)].as_string() == "San Francisco",
            )
        ).scalar_one()
        lat = db.session.execute(
            sa.select(model.value[("geo", "lat")].as_float()).where(
                model.key == "address"
            )
        ).scalar_one()
        many = db.session.execute(
            sa.select(model.user_id).where(model.key == "logins", model.value_num >= 5)
        ).scalar_one()
    assert city == USER and lat == 37.7 and many == USER
    assert rows["logins"] == ("number", "5", 5.0)
    assert rows["ltv"] == ("string", "1200.50", 1200.5)
    assert rows["zip"] == ("string", "094103", None)
    assert rows["vip"] == ("boolean", "true", None)
    assert rows["nickname"] == ("null", None, None)
    assert rows["tags"] == ("array", None, None)
    assert rows["address"] == ("object", None, None)
    assert profile(inbound_app)["traits"]["nickname"] is None


def test_unstorable_characters_are_replaced(inbound_app):
    body = (
        b'{"type": "identify", "userId": "u\\u0000x", "messageId": "nul",'
        b' "traits": {"k\\u0000": "a\\u0000b", "s": "\\ud800", "ok": "\\ud83d\\ude00"}}'
    )
    assert post(inbound_app, body).status_code == 200
    assert profile(inbound_app, "u\ufffdx")["traits"] == {
        "k\ufffd": "a\ufffdb",
        "s": "\ufffd",
        "ok": "\U0001f600",
    }


def test_large_batch(inbound_app):
    batch = [track(f"big-{i}", f"u{i % 37}", properties={"i": i}) for i in range(1100)]
    batch += [identify(f"big-id-{i}", f"u{i}", traits={"n": i}) for i in range(37)]
    response = post(inbound_app, {"batch": batch})  # ~900 KB, under the 1 MiB cap
    assert response.json["stored"] == 1137
    assert post(inbound_app, {"batch": batch}).json["duplicates"] == 1137
    assert counts(inbound_app)["refiner_segment_event"] == 1100


# -- retention -------------------------------------------------------------------


def test_prune_events_command(inbound_app):
    from flask.cli import AppGroup
    from flask_refiner_segment.inbound.cli import register

    group_cli = AppGroup("refiner-segment")
    register(group_cli)
    recent = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    recent_at = recent.strftime("%Y-%m-%dT%H:%M:%SZ")
    post(
        inbound_app,
        [
            track("old-t", at="2020-01-01T00:00:00Z"),
            page("old-p", at="2020-01-01T00:00:00Z"),
            track("new-t", at=recent_at),
            page("new-p", at=recent_at),
            identify("old-i", at="2020-01-01T00:00:00Z"),
        ],
    )
    seen = inbound_app.extensions["refiner_segment"].tables.inbound.InboundMessage
    db = inbound_app.extensions["test_db"]
    with inbound_app.app_context():
        db.session.execute(
            sa.update(seen)
            .where(seen.message_id.in_(["old-t", "old-p"]))
            .values(received_at=dt.datetime(2020, 1, 1, 0, 0, 5))
        )
        db.session.commit()
    runner = inbound_app.test_cli_runner()
    result = runner.invoke(group_cli, ["prune-events", "--older-than", "30"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 events, 1 views and 2 seen message ids." in result.output
    with inbound_app.app_context():
        assert [e["message_id"] for e in api.recent_events(USER)] == ["new-t"]
        assert profile(inbound_app)["traits"]  # traits are not events: kept
    result = runner.invoke(group_cli, ["prune-events"])  # default: 365 days
    assert "Deleted 0 events, 0 views" in result.output
    result = runner.invoke(group_cli, ["prune-events", "--older-than", "0"])
    assert "Deleted 1 events, 1 views and 0 seen message ids." in result.output
    result = runner.invoke(group_cli, ["prune-events", "--older-than", "-1"])
    assert result.exit_code == 2
    result = runner.invoke(group_cli, ["prune-events", "--older-than", "999999999"])
    assert "Deleted 0 events" in result.output
