"""The survey_completed receiver: durable record, no host transaction, skip reasons."""

from __future__ import annotations

import decimal
import json
import logging
import threading
import typing as t

import pytest
import sqlalchemy as sa
from flask_refiner_segment.testing.embedded_redis import free_port
from rq import Queue

from . import hostapp
from .conftest import completion
from .conftest import run_worker
from .conftest import send_completion
from .helpers import deliveries


def queued_jobs(app: t.Any, redis_conn: t.Any) -> int:
    state = app.extensions["refiner_segment"]
    return len(Queue(state.config.queue, connection=redis_conn))


def test_records_pending_and_queues_one_job(app, redis_conn):
    for n in range(5):
        send_completion(app, n)
    rows = deliveries(app)
    assert [r.status for r in rows] == ["pending"] * 5
    assert [r.response_id for r in rows] == [f"r-{n}" for n in range(5)]
    assert all(r.payload and r.content_hash for r in rows)
    assert {r.nps_score for r in rows} == {9}  # for "latest NPS group" segments
    # One drain job for the burst, not one per completion.
    assert queued_jobs(app, redis_conn) == 1


def test_host_read_transaction_untouched(app):
    """A host transaction that only read may never be committed: the receiver
    records in a transaction of its own (writing ones: test_transaction.py)."""
    db = app.extensions["test_db"]
    table = sa.Table(
        "host_note", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True)
    )
    with app.app_context():
        table.create(db.engine)
    try:
        with app.test_request_context():
            db.session.execute(sa.select(table))
            hostapp.survey_completed.send(app, **completion(1))
            # The receiver neither committed nor rolled back the host's work.
            assert db.session().in_transaction()
            db.session.rollback()
        assert [r.status for r in deliveries(app)] == ["pending"]
    finally:
        with app.app_context():
            table.drop(db.engine)


def test_same_content_once_edit_again(app):
    send_completion(app, 1)
    send_completion(app, 1)
    send_completion(app, 1, answers={"how_likely": 3})
    rows = deliveries(app)
    assert len(rows) == 2
    assert rows[0].content_hash != rows[1].content_hash


def test_a_revert_to_earlier_answers_is_delivered_again(app):
    """Dedupe against the latest content only: A, B, A, A delivers A, B, A."""
    a = {"how_likely": 9, "role": "Engineer"}
    b = {"how_likely": 3, "role": "Engineer"}
    for answers in (a, b, a, a):
        send_completion(app, 1, answers=answers)
    rows = deliveries(app)
    assert [json.loads(r.payload)["response"]["answers"] for r in rows] == [a, b, a]
    state = app.extensions["refiner_segment"]
    table = state.tables.outbound.SurveyResponse.__table__
    with app.app_context(), state.db.engine.connect() as conn:
        (response,) = conn.execute(sa.select(table)).all()
    assert (response.response_id, response.user_id, response.survey_id) == (
        "r-1",
        "u-1",
        "nps-2026",
    )
    assert response.content_hash == rows[-1].content_hash
    assert response.answers == '{"how_likely":9,"role":"Engineer"}'
    assert response.nps_score == 9
    assert response.created_at <= response.updated_at


def test_concurrent_signals_of_one_response_never_drop_a_content(app):
    """Threads signal the same response at once with two contents, repeatedly:
    each round records each new content exactly once."""
    contents = [{"how_likely": n % 11, "round": n} for n in range(8)]
    barrier = threading.Barrier(4)

    def signal(answers: dict[str, t.Any]) -> None:
        barrier.wait()
        send_completion(app, 1, answers=answers)

    for first, second in zip(contents[::2], contents[1::2], strict=True):
        threads = [
            threading.Thread(target=signal, args=(c,))
            for c in (first, second, first, second)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    rows = deliveries(app)
    recorded = [json.loads(r.payload)["response"]["answers"] for r in rows]
    # Each content at least once; a content again only after the other one.
    assert all(c in recorded for c in contents)
    assert all(x != y for x, y in zip(recorded, recorded[1:], strict=False))


@pytest.mark.parametrize("user_id", [None, ""])
def test_missing_user_id_is_skipped(app, redis_conn, caplog, user_id):
    caplog.set_level(logging.INFO, "flask_refiner_segment")
    send_completion(app, 1, user_id=user_id)
    (row,) = deliveries(app)
    assert row.status == "skipped"
    assert "user_id" in row.reason
    assert row.payload is None
    assert queued_jobs(app, redis_conn) == 0
    assert "user_id" in caplog.text


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"response": {"completed_at": None, "answers": {}}}, "id"),
        ({"response": {"id": "r-1", "answers": ["not", "a", "mapping"]}}, "answers"),
    ],
)
def test_invalid_completion_is_recorded_failed(app, redis_conn, change, reason):
    kwargs = {**completion(1), **change}
    with app.test_request_context():
        hostapp.survey_completed.send(app, **kwargs)
    (row,) = deliveries(app)
    assert row.status == "failed"
    assert row.reason.startswith("invalid completion:")
    assert reason in row.reason
    assert queued_jobs(app, redis_conn) == 0


def test_int_user_id_sent_as_str(app):
    send_completion(app, 1, user_id=123)
    (row,) = deliveries(app)
    assert row.user_id == "123"
    assert '"user_id":"123"' in row.payload


def test_unsupported_value_converted_and_logged_once(app, caplog):
    class Odd:
        def __str__(self) -> str:
            return "odd!"

    caplog.set_level(logging.WARNING, "flask_refiner_segment")
    send_completion(app, 1, answers={"a": Odd(), "b": decimal.Decimal("1.5")})
    send_completion(app, 2, answers={"a": Odd()})
    rows = deliveries(app)
    assert '"odd!"' in rows[0].payload and "1.5" in rows[0].payload
    assert caplog.text.count("Odd") == 1


def test_no_write_key_skips(make_app, redis_conn):
    app = make_app(REFINER_SEGMENT_WRITE_KEY=None)
    send_completion(app, 1)
    (row,) = deliveries(app)
    assert (row.status, row.reason) == ("skipped", "no Segment write key configured")
    assert queued_jobs(app, redis_conn) == 0


def test_disabled_and_unselected_surveys_skip(app, redis_conn):
    state = app.extensions["refiner_segment"]
    from flask_refiner_segment import workspaces

    with app.app_context():
        workspaces.update(state, "default", {"surveys": ["other-survey"]})
    send_completion(app, 1)
    with app.app_context():
        workspaces.update(state, "default", {"surveys": None, "enabled": False})
    send_completion(app, 2)
    reasons = [r.reason for r in deliveries(app)]
    assert reasons == [
        "survey 'nps-2026' is not selected to send",
        "integration disabled",
    ]
    assert queued_jobs(app, redis_conn) == 0


def test_redis_down_keeps_delivery_then_requeue_delivers(
    make_app, redis_conn, segment, redis_url
):
    down = make_app(REFINER_SEGMENT_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    send_completion(down, 1)
    send_completion(down, 2)
    assert [r.status for r in deliveries(down)] == ["pending", "pending"]
    # Redis is back (same database, a working URL): requeue, then a worker.
    up = make_app()
    with up.app_context():
        assert up.extensions["refiner_segment"].owner.requeue()["workspaces"] == 1
    run_worker(up, redis_url)
    assert sorted(m["type"] for m in segment.messages) == [
        "group",
        "group",
        "identify",
        "identify",
        "track",
        "track",
    ]
    assert [r.status for r in deliveries(up)] == ["sent", "sent"]


def test_database_refusing_goes_through_redis(app, redis_url, segment):
    state = app.extensions["refiner_segment"]
    table = state.tables.outbound.Delivery.__table__
    with app.app_context():
        table.drop(state.db.engine)
    send_completion(app, 7)  # the INSERT fails: the completion travels through Redis
    with app.app_context():
        table.create(state.db.engine)
    run_worker(app, redis_url)
    (row,) = deliveries(app)
    assert (row.response_id, row.status) == ("r-7", "sent")
    assert len(segment.messages) == 3


def test_signal_outside_app_context_does_not_raise(app):
    hostapp.survey_completed.send(None, **completion(1))


def test_the_redis_fallback_carries_no_personal_data(
    app, redis_url, redis_conn, segment
):
    """Answers, traits and the user id travel encrypted, like the write key."""

    state = app.extensions["refiner_segment"]
    table = state.tables.outbound.Delivery.__table__
    with app.app_context():
        table.drop(state.db.engine)
    send_completion(
        app,
        8,
        user_id="ann-private-id",
        answers={"how_likely": 9, "role": "Secret Role", "Company Size": "50-200"},
        user_traits={"email": "ann@private.example"},
    )
    with app.app_context():
        table.create(state.db.engine)
    stored = repr(
        [
            redis_conn.lrange(key, 0, -1)
            if redis_conn.type(key) == b"list"
            else redis_conn.dump(key)
            for key in redis_conn.keys()
        ]
    )
    assert "refiner_segment:fallback" in repr(redis_conn.keys())
    for secret in ("ann-private-id", "Secret Role", "ann@private.example", "50-200"):
        assert secret not in stored
    run_worker(app, redis_url)
    (row,) = deliveries(app)
    assert (row.response_id, row.user_id, row.status) == (
        "r-8",
        "ann-private-id",
        "sent",
    )
    assert segment.messages[0]["traits"]["email"] == "ann@private.example"
