"""Fault injection on the recording side: the database refusing longer than
RQ's retry schedule, a response's edit reverted, the signal inside host
transactions that commit or roll back. With ``REFINER_FAULT_REPORT=path`` set,
a row per fault is appended to that file (see test_faults.py)."""

from __future__ import annotations

import json
import time
import typing as t
import uuid

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.outbound import fallback
from flask_refiner_segment.outbound import kick
from sqlalchemy import orm

from . import hostapp
from .conftest import cli_environment
from .conftest import completion
from .conftest import drain
from .conftest import flask_cli
from .conftest import run_worker
from .conftest import send_completion
from .helpers import deliveries
from .helpers import statuses
from .outage import database_outage
from .outage import engine_options
from .test_faults import report

pytestmark = pytest.mark.faults

N = 20
#: Longer than the retry schedule (REFINER_SEGMENT_JOB_RETRY_INTERVALS = [1]).
OUTAGE_SECONDS = 3.0


@pytest.fixture
def outage_app(make_app: t.Callable[..., Flask], database_url: str) -> Flask:
    return make_app(
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_url),
        REFINER_SEGMENT_JOB_RETRY_INTERVALS=[1],
        REFINER_SEGMENT_SWEEP_INTERVAL=1,
    )


def _workers_through_the_outage() -> t.Iterator[None]:
    """Yield while workers should run, for longer than the retry schedule."""
    deadline = time.monotonic() + OUTAGE_SECONDS
    while time.monotonic() < deadline:
        yield
        time.sleep(0.3)


@pytest.mark.parametrize("settings_cache", ["warm", "cold"])
def test_database_down_longer_than_the_retry_schedule(
    make_app, database_url, app_config, segment, redis_url, redis_conn, settings_cache
):
    app = make_app(
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(database_url),
        REFINER_SEGMENT_JOB_RETRY_INTERVALS=[1],
        REFINER_SEGMENT_SWEEP_INTERVAL=1,
        REFINER_SEGMENT_SETTINGS_CACHE_SECONDS=3600 if settings_cache == "warm" else 0,
    )
    state = app.extensions["refiner_segment"]
    with app.app_context():
        kick.schedule_sweep(state, state.queue)  # as a worker start does
    send_completion(app, 0)  # reads (and, warm, caches) the settings
    run_worker(app, redis_url)
    with database_outage(database_url):
        for n in range(1, N):
            send_completion(app, n)
        for _ in _workers_through_the_outage():
            run_worker(app, redis_url)  # the drain and sweep jobs fail
        assert fallback.length(redis_conn) == N - 1  # nothing given up
    result = flask_cli(
        ["refiner-segment", "status", "--json"], cli_environment(app_config)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["fallback"] == N - 1
    started = time.monotonic()
    # No requeue by hand: the sweep, still scheduled, drains the fallback.
    drain(app, redis_url, lambda: statuses(app) == {"sent": N}, timeout=30)
    assert fallback.length(redis_conn) == 0
    report(
        f"Database down {OUTAGE_SECONDS:.0f} s (settings cache {settings_cache})",
        N,
        segment,
        time.monotonic() - started,
    )
    assert segment.duplicates == 0


def test_settings_decided_when_recorded(outage_app, database_url, redis_url):
    """Settings unreadable at the signal: the skip reason is decided by the
    worker that records the completion, against the settings then."""
    state = outage_app.extensions["refiner_segment"]
    from flask_refiner_segment import workspaces

    with outage_app.app_context():
        workspaces.update(state, "default", {"surveys": ["other-survey"]})
    with database_outage(database_url):
        send_completion(outage_app, 1)
        send_completion(outage_app, 2, survey_id="other-survey")
    drain(
        outage_app,
        redis_url,
        lambda: sorted(statuses(outage_app).elements()) == ["sent", "skipped"],
    )
    rows = {r.response_id: r for r in deliveries(outage_app)}
    assert rows["r-1"].reason == "survey 'nps-2026' is not selected to send"
    assert rows["r-1"].payload is None and rows["r-1"].user_id == "u-1"
    assert rows["r-2"].status == "sent"


def test_jobs_of_earlier_versions_never_give_up(
    outage_app, database_url, segment, redis_url, redis_conn
):
    state = outage_app.extensions["refiner_segment"]
    payload = completion(1)
    from flask_refiner_segment.core.completion import canonical_json
    from flask_refiner_segment.core.completion import normalize_completion

    normalized = canonical_json(normalize_completion(**payload))
    row = {
        "workspace_id": "default",
        "response_id": "r-1",
        "survey_id": "nps-2026",
        "user_id": "u-1",
        "payload": normalized,
        "nps_score": 9,
    }
    legacy = normalized.replace('"r-1"', '"r-2"')
    with outage_app.app_context():
        kick.schedule_sweep(state, state.queue)
    with database_outage(database_url):
        # 0.2's sealed row, and 0.1's clear arguments.
        state.queue.enqueue(
            kick.RECORD_JOB, "default", state.box.encrypt(json.dumps(row))
        )
        state.queue.enqueue(
            kick.RECORD_JOB, "default", "r-2", "nps-2026", "u-1", legacy
        )
        for _ in _workers_through_the_outage():
            run_worker(outage_app, redis_url)
        assert fallback.length(redis_conn) == 2
    drain(outage_app, redis_url, lambda: statuses(outage_app) == {"sent": 2})
    assert len(set(segment.message_ids())) == 6


def test_a_reverted_edit_is_delivered_three_times(app, segment, redis_url):
    a = {"how_likely": 9, "role": "Engineer"}
    b = {"how_likely": 4, "role": "Manager"}
    started = time.monotonic()
    for answers in (a, b, a, a):
        send_completion(app, 1, answers=answers)
        run_worker(app, redis_url)
    for answers in (a, b, a, a):  # without a worker in between
        send_completion(app, 2, answers=answers)
    drain(app, redis_url, lambda: statuses(app) == {"sent": 6})
    tracks = [m for m in segment.messages if m["type"] == "track"]
    by_response = [
        [
            m["properties"]["answers"]
            for m in tracks
            if m["properties"]["response_id"] == r
        ]
        for r in ("r-1", "r-2")
    ]
    expected = [
        {"how_likely": 9, "role": "Engineer"},
        {"how_likely": 4, "role": "Manager"},
    ]
    assert by_response[0] == [expected[0], expected[1], expected[0]]
    assert sorted(map(json.dumps, by_response[1])) == sorted(
        map(json.dumps, [expected[0], expected[1], expected[0]])
    )
    report(
        "A response edited A → B → A (twice)", 6, segment, time.monotonic() - started
    )


def test_signal_inside_transactions_that_commit_or_roll_back(app, segment, redis_url):
    db = app.extensions["test_db"]

    class Answer(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "host_answer"
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        text: orm.Mapped[str] = orm.mapped_column(sa.String(64))

    with app.app_context():
        Answer.__table__.create(db.engine)
    started = time.monotonic()
    for n in range(N):
        with app.test_request_context():
            db.session.add(Answer(text=uuid.uuid4().hex))
            if n % 3 == 0:
                db.session.flush()
            hostapp.survey_completed.send(app, **completion(n))
            if n % 2 == 0:
                db.session.commit()
            else:
                db.session.rollback()
        if n % 5 == 4:
            run_worker(app, redis_url)
    committed = N // 2
    drain(app, redis_url, lambda: statuses(app) == {"sent": committed})
    with app.app_context():
        assert db.session.query(Answer).count() == committed
    assert sorted(r.response_id for r in deliveries(app)) == sorted(
        f"r-{n}" for n in range(0, N, 2)
    )
    report(
        "Signal inside host transactions, every other one rolled back",
        committed,
        segment,
        time.monotonic() - started,
    )


def test_two_drainers_at_once_record_each_completion_once(app, redis_conn):
    """Both drainers read the same chunks; the dedupe against the latest content
    (and against content older than it) makes the second reading a no-op, even
    for a response edited A → B → A while it waited in the list."""
    import threading

    from flask_refiner_segment.core.completion import canonical_json
    from flask_refiner_segment.core.completion import normalize_completion

    state = app.extensions["refiner_segment"]
    a = {"how_likely": 9}
    b = {"how_likely": 2}
    signals = [(1, a), (1, b), (1, a)] + [(n, a) for n in range(2, 2 + N)]
    with app.app_context():
        for n, answers in signals:
            normalized = normalize_completion(**completion(n, answers=answers))
            row = {
                "workspace_id": "default",
                "response_id": f"r-{n}",
                "survey_id": "nps-2026",
                "user_id": "u-1",
                "payload": canonical_json(normalized),
                "nps_score": None,
            }
            fallback.push(state, row, check_settings=True)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def drainer() -> None:
        try:
            with app.app_context():
                barrier.wait()
                kick.drain_fallback(state)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=drainer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert fallback.length(redis_conn) == 0
    rows = deliveries(app)
    assert len(rows) == 3 + N
    revisions = [
        json.loads(r.payload)["response"]["answers"]
        for r in rows
        if r.response_id == "r-1"
    ]
    assert revisions == [a, b, a]
