"""flask_refiner_segment.outbound.record: recording a delivery (pending, deduped
against the latest content, superseded, unsent), on SQLite and PostgreSQL,
called directly.

The delivery row helpers are test_outbox.py's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import sqlalchemy as sa
from flask_refiner_segment.outbound import claims
from flask_refiner_segment.outbound import outbox
from flask_refiner_segment.outbound import record
from flask_refiner_segment.tables import outbound as models
from flask_refiner_segment.tables.base import utcnow

from .test_outbox import row
from .test_outbox import rows
from .test_outbox import state_of

# -- recording --------------------------------------------------------------


def test_insert_pending_records_a_due_pending_delivery(make_app):
    app = make_app(REFINER_SEGMENT_RETRY_WINDOW=3600)
    before = utcnow()
    with app.app_context():
        assert record.insert_pending(state_of(app), row(1)) is True
    after = utcnow()
    r = rows(app)["r-1"]
    assert (r.workspace_id, r.survey_id, r.user_id, r.nps_score) == (
        "ws-a",
        "nps",
        "u-1",
        9,
    )
    assert r.status == models.PENDING and r.attempts == 0
    assert r.content_hash == hashlib.sha256(b'{"n":1}').hexdigest()
    assert before <= r.created_at == r.next_attempt_at <= after
    assert r.retry_until == r.created_at + dt.timedelta(seconds=3600)
    assert r.claim_token is None and r.reason is None


def test_insert_pending_dedupes_against_the_latest_content(app):
    state = state_of(app)
    edited = '{"n":"edited"}'
    with app.app_context():
        assert record.insert_pending(state, row(1)) is True
        assert record.insert_pending(state, row(1)) is False  # same content
        assert record.insert_pending(state, row(1, user_id="other")) is False
        # An edit of the response (new content) is a new delivery...
        assert record.insert_pending(state, row(1, payload=edited)) is True
        assert record.insert_pending(state, row(1, payload=edited)) is False
        # ... and so is a revert to the earlier content (A -> B -> A) ...
        assert record.insert_pending(state, row(1)) is True
        assert record.insert_pending(state, row(1)) is False
        # ... and the same content in another workspace.
        assert record.insert_pending(state, row(1, workspace_id="ws-b")) is True
    table = state.tables.outbound.Delivery.__table__
    with app.app_context(), state.db.engine.connect() as conn:
        stored = conn.execute(
            sa.select(
                table.c.workspace_id, table.c.payload, table.c.content_hash
            ).order_by(table.c.id)
        ).all()
    payloads = [json.loads(p) for _, p, _ in stored]
    assert [ws for ws, _, _ in stored] == ["ws-a", "ws-a", "ws-a", "ws-b"]
    assert [p["n"] for p in payloads] == [1, "edited", 1, 1]
    # Edits carry when they were recorded: new messageIds for a revert.
    assert ["recorded_at" in p for p in payloads] == [False, True, True, False]
    assert stored[0].content_hash == stored[2].content_hash  # of the content
    responses = state.tables.outbound.SurveyResponse.__table__
    with app.app_context(), state.db.engine.connect() as conn:
        latest = conn.execute(
            sa.select(responses).order_by(responses.c.workspace_id)
        ).all()
    assert [(r.workspace_id, r.content_hash) for r in latest] == [
        ("ws-a", stored[2].content_hash),
        ("ws-b", stored[3].content_hash),
    ]


def test_a_completion_older_than_the_latest_content_is_superseded(app):
    """A completion that waited in the Redis fallback does not overwrite (nor
    deliver over) content recorded after it arrived."""
    state = state_of(app)
    earlier = (utcnow() - dt.timedelta(minutes=5)).isoformat()
    with app.app_context():
        assert record.insert_pending(state, row(1, payload='{"n":"new"}')) is True
        old = row(1, received_at=earlier)
        assert record.insert_pending(state, old) is False
        assert record.insert_pending(state, row(2, received_at=earlier)) is True
    found = rows(app)
    assert json.loads(found["r-1"].payload) == {"n": "new"}
    assert found["r-2"].created_at > dt.datetime.fromisoformat(earlier)


def test_insert_unsent_records_status_and_reason_without_payload(app):
    state = state_of(app)
    base = {k: v for k, v in row(1).items() if k not in ("payload", "nps_score")}
    with app.app_context():
        record.insert_unsent(state, base, models.SKIPPED, "integration disabled")
        record.insert_unsent(
            state, {**base, "response_id": "r-2"}, models.FAILED, "invalid"
        )
    found = rows(app)
    assert (found["r-1"].status, found["r-1"].reason) == (
        "skipped",
        "integration disabled",
    )
    assert (found["r-2"].status, found["r-2"].reason) == ("failed", "invalid")
    for r in found.values():
        assert r.payload is None and r.content_hash is None
        assert r.attempts == 0 and r.next_attempt_at is None
    with app.app_context():
        # Not due: nothing to claim, nothing pending.
        assert claims.claim(state, "ws-a", 10) == []
        assert outbox.next_due(state, "ws-a") is None
