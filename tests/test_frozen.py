"""A delivery's messages are built once, stored, and resent as they are."""

from __future__ import annotations

import json
import re
import typing as t

import sqlalchemy as sa
from flask_refiner_segment import workspaces
from flask_refiner_segment.core.messages import BuildOptions
from flask_refiner_segment.outbound import claims
from flask_refiner_segment.outbound import frozen
from flask_refiner_segment.outbound import outbox

from .conftest import drain
from .conftest import run_worker
from .conftest import send_completion
from .helpers import deliveries
from .helpers import statuses

#: A backoff that outlasts the burst worker of the first attempt.
SLOW_BACKOFF = {"REFINER_SEGMENT_BACKOFF_BASE": 3, "REFINER_SEGMENT_BACKOFF_MAX": 3}
SENT_AT = re.compile(rb',"sentAt":"[^"]*"')


def without_sent_at(body: bytes) -> bytes:
    """A request body with its ``sentAt`` (the one field an attempt changes) cut out."""
    assert len(SENT_AT.findall(body)) == 1, body[:200]
    return SENT_AT.sub(b"", body)


def change_everything(app: t.Any) -> None:
    """An admin changes the trait prefix and event name; the package is upgraded."""
    state = app.extensions["refiner_segment"]
    with app.app_context():
        workspaces.update(
            state, "default", {"trait_prefix": "changed_", "track_event": "Other"}
        )
    state.version = "99.0.0"


def test_a_retry_resends_the_first_attempt_byte_for_byte(make_app, segment, redis_url):
    # A backoff long enough that the burst worker does not retry at once.
    app = make_app(**SLOW_BACKOFF)
    segment.keep_bodies = True
    segment.set_fault(status=503, times=1)
    send_completion(app, 1)
    run_worker(app, redis_url)
    [row] = deliveries(app)
    assert row.status == "pending" and row.attempts == 1
    assert [m["type"] for m in json.loads(row.messages)] == [
        "identify",
        "group",
        "track",
    ]
    change_everything(app)
    drain(app, redis_url, lambda: statuses(app) == {"sent": 1})
    first, retry = segment.bodies
    assert without_sent_at(retry) == without_sent_at(first)
    assert json.loads(retry)["sentAt"] != json.loads(first)["sentAt"]
    sent = json.loads(first)["batch"]
    assert segment.message_ids() == [m["messageId"] for m in sent]
    assert deliveries(app)[0].messages == frozen.dumps(sent)
    assert sent[2]["event"] == "Survey Completed"
    assert sent[0]["context"]["library"]["version"] != "99.0.0"
    # The change took effect: a new completion is built with it.
    send_completion(app, 2)
    drain(app, redis_url, lambda: statuses(app) == {"sent": 2})
    track = json.loads(segment.bodies[-1])["batch"][2]
    assert track["event"] == "Other"
    assert "changed_how_likely" in track["properties"]


def _claim(app: t.Any) -> list[t.Any]:
    state = app.extensions["refiner_segment"]
    with app.app_context():
        return claims.claim(state, "default", 10)


def _prepare(app: t.Any, rows: list[t.Any], event: str) -> frozen.Prepared:
    state = app.extensions["refiner_segment"]
    options = BuildOptions(event_name=event, library_version=state.version)
    with app.app_context():
        return frozen.prepare(state, rows, options, "default")


def test_a_batch_is_frozen_in_one_fenced_statement(app, redis_conn):
    for n in range(5):
        send_completion(app, n)
    state = app.extensions["refiner_segment"]
    rows = _claim(app)
    assert [row.messages for row in rows] == [None] * 5
    updates: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    with app.app_context():
        engine = state.db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        prepared = _prepare(app, rows, "Survey Completed")
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert len(updates) == 1
    assert [r.id for r in prepared.rows] == [r.id for r in rows]
    stored = {r.id: r.messages for r in deliveries(app)}
    assert [stored[r.id] for r in rows] == [frozen.dumps(g) for g in prepared.groups]


def test_a_stale_claim_freezes_nothing_and_sends_nothing(app, redis_conn):
    for n in range(3):
        send_completion(app, n)
    state = app.extensions["refiner_segment"]
    stale = _claim(app)
    with app.app_context():
        outbox.release_stale(state, force=True)  # its lease expired
    current = _claim(app)
    kept = _prepare(app, current, "Survey Completed")
    late = _prepare(app, stale, "Another Event")
    assert late.rows == [] and late.groups == []
    assert [r.id for r in late.lost] == [r.id for r in stale]
    stored = [r.messages for r in deliveries(app)]
    assert stored == [frozen.dumps(g) for g in kept.groups]
    # A claim of rows already frozen gets their messages, never rebuilt.
    with app.app_context():
        outbox.release_stale(state, force=True)
    again = _claim(app)
    assert [r.messages for r in again] == stored
    rebuilt = _prepare(app, again, "Another Event")
    assert rebuilt.groups == kept.groups


def test_unreadable_stored_messages_fail_that_delivery_only(app, segment, redis_url):
    for n in range(2):
        send_completion(app, n)
    state = app.extensions["refiner_segment"]
    table = state.tables.outbound.Delivery.__table__
    first = deliveries(app)[0].id
    with app.app_context(), state.db.engine.begin() as conn:
        conn.execute(
            table.update().where(table.c.id == first).values(messages='{"no": 1}')
        )
    run_worker(app, redis_url)
    rows = {r.id: r for r in deliveries(app)}
    assert rows[first].status == "failed"
    assert "stored messages" in rows[first].reason
    assert statuses(app) == {"sent": 1, "failed": 1}
    assert len(segment.message_ids()) == 3
