"""Erasure: ``forget_user`` and ``flask refiner-segment forget-user`` (#16)."""

from __future__ import annotations

import json
import typing as t

import pytest
import sqlalchemy as sa
from flask_refiner_segment.outbound import claims
from flask_refiner_segment.outbound import outbox

from . import inbound_support as inbound
from .conftest import cli_environment
from .conftest import drain
from .conftest import flask_cli
from .conftest import send_completion
from .helpers import deliveries
from .helpers import statuses


@pytest.fixture
def erase_app(make_app: t.Callable[..., t.Any]) -> t.Any:
    return make_app(REFINER_SEGMENT_INBOUND_API_KEY=inbound.API_KEY)


def _responses(app: t.Any) -> dict[str, t.Any]:
    state = app.extensions["refiner_segment"]
    table = state.tables.outbound.SurveyResponse.__table__
    with app.app_context(), state.db.engine.connect() as conn:
        return {r.response_id: r for r in conn.execute(sa.select(table))}


def _seed_inbound(app: t.Any) -> None:
    batch = [
        inbound.identify("m-1", "u-1", traits={"email": "ann@example.com"}),
        inbound.identify("m-2", "u-2", traits={"email": "bob@example.com"}),
        inbound.group("m-3", "u-1"),
        inbound.track("m-4", "u-1"),
        inbound.track("m-5", "u-2"),
        inbound.page("m-6", "u-1"),
    ]
    assert inbound.post(app, {"batch": batch}).json["stored"] == 6


def test_forget_user_erases_and_cancels(erase_app, segment, redis_url):
    app = erase_app
    ext = app.extensions["refiner_segment"].owner
    send_completion(app, 1, user_id="u-1")
    send_completion(app, 3, user_id="u-2")
    drain(app, redis_url, lambda: statuses(app) == {"sent": 2})
    send_completion(app, 2, user_id="u-1")  # pending: no worker ran since
    assert statuses(app) == {"sent": 2, "pending": 1}
    _seed_inbound(app)
    sent_before = len(segment.messages)

    with app.app_context():
        counts = ext.forget_user("u-1")
    assert counts["deliveries"] == 2
    assert counts["cancelled"] == 1
    assert counts["responses"] == 2
    assert counts["traits"] == 1
    assert counts["events"] == 1
    assert counts["views"] == 1
    assert counts["memberships"] == 1
    assert counts["profiles"] == 1

    rows = {r.response_id: r for r in deliveries(app)}
    for rid in ("r-1", "r-2"):
        assert rows[rid].payload is None
        assert rows[rid].messages is None
        assert rows[rid].user_id is None
    assert rows["r-1"].status == "sent"  # the log keeps its id, status and times
    assert rows["r-2"].status == "skipped"
    assert "erased" in rows["r-2"].reason
    assert rows["r-3"].user_id == "u-2" and rows["r-3"].payload is not None
    responses = _responses(app)
    assert responses["r-1"].answers is None and responses["r-1"].user_id is None
    assert responses["r-3"].answers is not None

    with app.app_context():
        assert ext.get_profile("u-1") is None
        assert ext.recent_events("u-1") == []
        assert ext.recent_views("u-1") == []
        assert ext.get_profile("u-2")["traits"]["email"] == "bob@example.com"
        assert len(ext.recent_events("u-2")) == 1

    # The cancelled delivery is never sent, and re-signalling an erased
    # response with the same content sends nothing either.
    send_completion(app, 1, user_id="u-1")
    drain(app, redis_url, lambda: True)
    assert len(segment.messages) == sent_before
    assert statuses(app) == {"sent": 2, "skipped": 1}


def test_forget_user_fences_a_batch_in_flight(erase_app, segment):
    app = erase_app
    ext = app.extensions["refiner_segment"].owner
    send_completion(app, 1, user_id="u-1")
    state = app.extensions["refiner_segment"]
    with app.app_context():
        claimed = claims.claim(state, "default", 10)
        assert len(claimed) == 1
        assert ext.forget_user("u-1")["cancelled"] == 1
        # Segment's late answer to the batch changes nothing.
        assert outbox.mark_sent(state, claimed, 200) == []
    (row,) = deliveries(app)
    assert row.status == "skipped" and row.payload is None


def test_forget_user_other_workspace_untouched(erase_app):
    app = erase_app
    ext = app.extensions["refiner_segment"].owner
    send_completion(app, 1, user_id="u-1", workspace_id="acme")
    send_completion(app, 2, user_id="u-1")
    with app.app_context():
        assert ext.forget_user("u-1", workspace_id="acme")["deliveries"] == 1
        with pytest.raises(ValueError, match="empty"):
            ext.forget_user("  ")
    rows = {r.response_id: r for r in deliveries(app)}
    assert rows["r-1"].payload is None
    assert rows["r-2"].payload is not None and rows["r-2"].status == "pending"


def test_forget_user_cli(erase_app, app_config, segment):
    app = erase_app
    send_completion(app, 1, user_id="u-1")
    _seed_inbound(app)
    env = cli_environment(app_config, REFINER_SEGMENT_INBOUND_API_KEY=inbound.API_KEY)
    result = flask_cli(["refiner-segment", "forget-user", "u-1"], env)
    assert result.returncode == 0, result.stderr
    assert "Forgot user 'u-1': 1 deliveries emptied (1 not sent" in result.stdout
    assert "1 traits, 1 events, 1 views" in result.stdout
    (row,) = deliveries(app)
    assert row.status == "skipped" and row.payload is None
    counts = inbound.counts(app)
    assert counts["refiner_segment_user_trait"] == 1  # u-2's
    assert json.dumps(counts)  # still readable

    result = flask_cli(["refiner-segment", "forget-user", " "], env)
    assert result.returncode == 2
    assert "user_id is empty" in result.stderr
    assert "Traceback" not in result.stderr
