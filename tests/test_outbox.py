"""flask_refiner_segment.outbound.outbox: every state change of a delivery after
its claim (sent, failed, retried with backoff, released, stale claims) and
recovery, on SQLite and PostgreSQL, called directly (the pipeline around it:
test_jobs.py).

The delivery row helpers live here; recording a delivery is tested in
test_record.py, claiming in test_claims.py.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.outbound import claims
from flask_refiner_segment.outbound import outbox
from flask_refiner_segment.outbound import record
from flask_refiner_segment.outbound.client import SendResult
from flask_refiner_segment.tables import outbound as models
from flask_refiner_segment.tables.base import utcnow

PAST = dt.datetime(2000, 1, 1)
FUTURE = dt.datetime(2999, 1, 1)


def state_of(app: Flask) -> t.Any:
    return app.extensions["refiner_segment"]


def row(n: int, workspace_id: str = "ws-a", **extra: t.Any) -> dict[str, t.Any]:
    return {
        "workspace_id": workspace_id,
        "response_id": f"r-{n}",
        "survey_id": "nps",
        "user_id": f"u-{n}",
        "payload": f'{{"n":{n}}}',
        "nps_score": 9,
        **extra,
    }


def rows(app: Flask) -> dict[str, t.Any]:
    """Every delivery by response id (columns, read on a connection of its own)."""
    state = state_of(app)
    table = state.tables.outbound.Delivery.__table__
    with app.app_context(), state.db.engine.connect() as conn:
        return {r.response_id: r for r in conn.execute(sa.select(table))}


def set_values(app: Flask, response_ids: list[str], **values: t.Any) -> None:
    state = state_of(app)
    table = state.tables.outbound.Delivery.__table__
    with app.app_context(), state.db.engine.begin() as conn:
        conn.execute(
            table.update().where(table.c.response_id.in_(response_ids)).values(values)
        )


def insert(app: Flask, *new: dict[str, t.Any]) -> list[int]:
    with app.app_context():
        for r in new:
            assert record.insert_pending(state_of(app), r)
    found = rows(app)
    return [found[r["response_id"]].id for r in new]


def claim(app: Flask, workspace_id: str = "ws-a", limit: int = 100, **kw: t.Any):
    with app.app_context():
        return claims.claim(state_of(app), workspace_id, limit, **kw)


# -- after a send ---------------------------------------------------------------


def test_mark_sent(app):
    insert(app, row(1), row(2))
    claimed = claim(app)
    before = utcnow()
    with app.app_context():
        assert outbox.mark_sent(state_of(app), [claimed[0]], 200) == [claimed[0].id]
        assert outbox.mark_sent(state_of(app), [], 200) == []  # nothing to do
    r, other = rows(app)["r-1"], rows(app)["r-2"]
    assert (r.status, r.attempts, r.last_status_code) == ("sent", 1, 200)
    assert r.sent_at >= before and r.reason is None
    assert r.claim_token is None and r.lease_expires_at is None
    assert r.next_attempt_at is None
    assert other.status == models.SENDING  # not in the ids


def test_mark_failed(app):
    insert(app, row(1))
    (claimed,) = claim(app)
    with app.app_context():
        outbox.mark_failed(state_of(app), [claimed], "400 Bad Request", 400)
    r = rows(app)["r-1"]
    assert (r.status, r.attempts, r.reason, r.last_status_code) == (
        "failed",
        1,
        "400 Bad Request",
        400,
    )
    assert r.claim_token is None and r.lease_expires_at is None
    assert r.next_attempt_at is None and r.sent_at is None


@pytest.mark.parametrize("attempts", [1, 2, 3, 5, 8, 20])
def test_backoff_is_jittered_within_half_to_full_exponential_ceiling(
    make_app, attempts
):
    app = make_app(
        REFINER_SEGMENT_BACKOFF_BASE=2.0,
        REFINER_SEGMENT_BACKOFF_MAX=60.0,
        REFINER_SEGMENT_RETRY_AFTER_MAX=30.0,
    )
    state = state_of(app)
    ceiling = min(60.0, 2.0 * 2 ** (attempts - 1))
    delays = [outbox.backoff(state, attempts, None) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1  # jittered
    # Retry-After is a floor, itself capped by RETRY_AFTER_MAX.
    assert all(outbox.backoff(state, attempts, 25.0) >= 25.0 for _ in range(50))
    assert all(
        30.0 <= outbox.backoff(state, attempts, 1000.0) <= max(30.0, ceiling)
        for _ in range(50)
    )


def test_backoff_of_zero_attempts_is_the_base(make_app):
    app = make_app(REFINER_SEGMENT_BACKOFF_BASE=4.0, REFINER_SEGMENT_BACKOFF_MAX=60.0)
    assert all(2.0 <= outbox.backoff(state_of(app), 0, None) <= 4.0 for _ in range(100))


def retry_result(retry_after: float | None = None) -> SendResult:
    return SendResult(
        outcome="retry",
        status_code=503,
        body="",
        error="Segment answered 503",
        retry_after=retry_after,
    )


def test_mark_retry_puts_back_with_backoff_and_holds_the_workspace(make_app):
    app = make_app(
        REFINER_SEGMENT_BACKOFF_BASE=100.0,
        REFINER_SEGMENT_BACKOFF_MAX=1000.0,
        REFINER_SEGMENT_RETRY_WINDOW=3600,
    )
    state = state_of(app)
    insert(app, row(1), row(2), row(4, workspace_id="ws-b"))
    set_values(app, ["r-1"], attempts=2)
    claimed = claim(app)
    insert(app, row(3))  # recorded meanwhile: pending and due
    before = utcnow()
    with app.app_context():
        expired, next_at = outbox.mark_retry(state, "ws-a", claimed, retry_result())
    after = utcnow()
    assert expired == []
    # attempts: the highest of the batch + 1 = 3 -> ceiling 100 * 2**2 = 400
    assert before + dt.timedelta(seconds=200) <= next_at
    assert next_at <= after + dt.timedelta(seconds=400)
    found = rows(app)
    for rid, attempts in (("r-1", 3), ("r-2", 1)):
        r = found[rid]
        assert (r.status, r.attempts, r.last_status_code) == ("pending", attempts, 503)
        assert r.reason == "Segment answered 503 (retrying)"
        assert r.next_attempt_at == next_at
        assert r.claim_token is None and r.lease_expires_at is None
    # The other due delivery of the workspace waits too, its attempts unchanged.
    assert found["r-3"].next_attempt_at == next_at and found["r-3"].attempts == 0
    # Another workspace is not held.
    assert found["r-4"].next_attempt_at < before
    with app.app_context():
        assert outbox.next_due(state, "ws-a") == next_at


def test_mark_retry_honours_retry_after_as_a_floor(make_app):
    app = make_app(
        REFINER_SEGMENT_BACKOFF_BASE=0.2,
        REFINER_SEGMENT_BACKOFF_MAX=0.5,
        REFINER_SEGMENT_RETRY_AFTER_MAX=300.0,
    )
    insert(app, row(1))
    claimed = claim(app)
    before = utcnow()
    with app.app_context():
        _, next_at = outbox.mark_retry(
            state_of(app), "ws-a", claimed, retry_result(120)
        )
    assert next_at >= before + dt.timedelta(seconds=120)
    assert rows(app)["r-1"].next_attempt_at == next_at


def test_mark_retry_fails_what_is_out_of_its_retry_window(make_app):
    app = make_app(
        REFINER_SEGMENT_BACKOFF_BASE=100.0,
        REFINER_SEGMENT_BACKOFF_MAX=100.0,
        REFINER_SEGMENT_RETRY_WINDOW=3600,
    )
    insert(app, row(1), row(2))
    # r-1 must be done before the next attempt could happen.
    set_values(app, ["r-1"], retry_until=utcnow() + dt.timedelta(seconds=10))
    claimed = claim(app)
    with app.app_context():
        expired, next_at = outbox.mark_retry(
            state_of(app), "ws-a", claimed, retry_result()
        )
    found = rows(app)
    assert expired == [found["r-1"].id]
    r = found["r-1"]
    assert (r.status, r.attempts, r.last_status_code) == ("failed", 1, 503)
    assert r.reason == "gave up after the retry window: Segment answered 503"
    assert r.next_attempt_at is None and r.claim_token is None
    assert found["r-2"].status == models.PENDING
    assert found["r-2"].next_attempt_at == next_at


def test_release_returns_claims_unsent(app):
    insert(app, row(1), row(2))
    claimed = claim(app)
    before = utcnow()
    with app.app_context():
        outbox.release(state_of(app), [claimed[0]], "Segment rejected the key")
        outbox.release(state_of(app), [claimed[1]])
    found = rows(app)
    for r in found.values():
        assert r.status == models.PENDING and r.attempts == 0
        assert r.claim_token is None and r.lease_expires_at is None
        assert r.next_attempt_at >= before
    assert found["r-1"].reason == "Segment rejected the key"
    assert found["r-2"].reason is None  # no reason given: left as it was
    assert [r.response_id for r in claim(app)] == ["r-1", "r-2"]  # due again


def test_a_stale_claim_changes_nothing(make_app):
    """A worker whose lease expired and whose rows another worker re-claimed
    cannot overwrite what the new claim decides, whichever answer comes last."""
    app = make_app(REFINER_SEGMENT_LEASE_SECONDS=0)
    insert(app, row(1), row(2))
    state = state_of(app)
    stale = claim(app)  # worker A; its lease expires at once
    with app.app_context():
        assert outbox.release_stale(state)[0] == 2  # the sweep takes them back
    fresh = claim(app)  # worker B
    assert [r.claim_token for r in fresh] != [r.claim_token for r in stale]
    with app.app_context():
        assert outbox.mark_sent(state, [fresh[0]], 200) == [fresh[0].id]
        # A's late answers: a failure, a retry, a release, a success.
        assert outbox.mark_failed(state, [stale[0]], "timed out", None) == []
        assert outbox.release(state, stale) == []
        expired, _ = outbox.mark_retry(state, "ws-a", stale, retry_result())
        assert expired == []
        assert outbox.mark_sent(state, [stale[1]], 200) == []
    found = rows(app)
    assert (found["r-1"].status, found["r-1"].attempts) == ("sent", 1)
    assert found["r-1"].sent_at is not None and found["r-1"].reason is None
    assert found["r-2"].status == models.SENDING  # still B's
    assert found["r-2"].claim_token == fresh[1].claim_token
    with app.app_context():
        assert outbox.mark_failed(state, [fresh[1]], "400", 400) == [fresh[1].id]
    assert rows(app)["r-2"].status == "failed" and rows(app)["r-2"].sent_at is None


def test_a_lost_connection_in_a_state_change_is_retried(make_app):
    """The worker's connection is killed under a state change (PostgreSQL
    restarted): the change is retried on a new connection, not left to the lease."""
    app = make_app(REFINER_SEGMENT_DB_RETRY_DELAYS=[0.05, 0.1])
    if not app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("PostgreSQL: a backend can be terminated")
    insert(app, row(1))
    state = state_of(app)
    claimed = claim(app)
    killed = []

    def kill_once(conn, cursor, statement, *args):
        if statement.startswith("UPDATE") and not killed:
            killed.append(statement)
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    with app.app_context():
        engine = state.db.engine
    sa.event.listen(engine, "before_cursor_execute", kill_once)
    try:
        with app.app_context():
            assert outbox.mark_sent(state, claimed, 200) == [claimed[0].id]
    finally:
        sa.event.remove(engine, "before_cursor_execute", kill_once)
    assert killed
    assert rows(app)["r-1"].status == "sent"


def test_next_due_is_when_the_last_pending_of_the_workspace_is_due(app):
    """A workspace is claimed once none of its pending deliveries waits
    (``claims.claim_many``): its turn is due when the last of them is."""
    state = state_of(app)
    with app.app_context():
        assert outbox.next_due(state, "ws-a") is None
    insert(app, row(1), row(2), row(3), row(4, workspace_id="ws-b"))
    late, later = dt.datetime(2031, 1, 1), dt.datetime(2032, 1, 1)
    set_values(app, ["r-1"], next_attempt_at=late)
    set_values(app, ["r-2"], next_attempt_at=later, status=models.SENDING)
    set_values(app, ["r-3"], next_attempt_at=dt.datetime(2030, 6, 1))
    set_values(app, ["r-4"], next_attempt_at=PAST)
    with app.app_context():
        # r-2 is not pending, r-4 is another workspace's.
        assert outbox.next_due(state, "ws-a") == late
        assert outbox.next_due(state, "ws-b") == PAST


# -- recovery ---------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_release_stale(app, force):
    state = state_of(app)
    insert(
        app,
        row(1),
        row(2),
        row(3, workspace_id="ws-b"),
        row(4, workspace_id="ws-c"),
        row(5, workspace_id="ws-d"),
    )
    set_values(app, ["r-1"], status=models.SENDING, lease_expires_at=PAST)
    set_values(app, ["r-2"], status=models.SENDING, lease_expires_at=FUTURE)
    set_values(app, ["r-3"], status=models.SENDING, lease_expires_at=FUTURE)
    set_values(app, ["r-4"], status=models.SENT)
    before = utcnow()
    with app.app_context():
        released, pending = outbox.release_stale(state, force=force)
    found = rows(app)
    assert found["r-1"].status == models.PENDING
    assert found["r-1"].claim_token is None and found["r-1"].lease_expires_at is None
    assert found["r-1"].next_attempt_at >= before
    assert found["r-4"].status == models.SENT
    if force:
        assert released == 3
        assert sorted(pending) == ["ws-a", "ws-b", "ws-d"]
        assert found["r-2"].status == found["r-3"].status == models.PENDING
    else:
        assert released == 1
        assert sorted(pending) == ["ws-a", "ws-d"]
        assert found["r-2"].status == found["r-3"].status == models.SENDING
        assert found["r-2"].lease_expires_at == FUTURE


def test_retry_failed_returns_count_and_workspaces(make_app):
    app = make_app(REFINER_SEGMENT_RETRY_WINDOW=3600)
    state = state_of(app)
    insert(
        app,
        row(1),
        row(2),
        row(3, workspace_id="ws-b"),
        row(4, workspace_id="ws-c"),
    )
    set_values(app, ["r-1", "r-2", "r-3"], status=models.FAILED, retry_until=PAST)
    with app.app_context():
        # Failed without a payload (an invalid completion): nothing to retry.
        record.insert_unsent(
            state,
            {"workspace_id": "ws-d", "response_id": "r-5"},
            models.FAILED,
            "invalid completion",
        )
        assert outbox.retry_failed(state, "ws-none") == (0, [])
        before = utcnow()
        n, workspaces = outbox.retry_failed(state, "ws-a")
        assert (n, workspaces) == (2, ["ws-a"])
        assert rows(app)["r-3"].status == models.FAILED
        n, workspaces = outbox.retry_failed(state)
        assert (n, workspaces) == (1, ["ws-b"])
        assert outbox.retry_failed(state) == (0, [])
    found = rows(app)
    for rid in ("r-1", "r-2", "r-3"):
        r = found[rid]
        assert r.status == models.PENDING and r.next_attempt_at >= before
        assert r.retry_until >= before + dt.timedelta(seconds=3600)
    assert found["r-4"].status == models.PENDING
    assert found["r-5"].status == models.FAILED
