"""Delivery jobs on a real RQ worker against the Segment stand-in."""

from __future__ import annotations

import collections
import datetime as dt
import json
import threading
import time
import typing as t

import sqlalchemy as sa
from flask_refiner_segment import delivery_failed
from flask_refiner_segment import delivery_succeeded
from flask_refiner_segment.testing.embedded_redis import free_port
from flask_refiner_segment.testing.standin import serve

from .conftest import drain
from .conftest import run_worker
from .conftest import send_completion
from .helpers import deliveries
from .helpers import end_backoffs
from .helpers import statuses


def test_delivers_identify_group_track_per_completion(app, segment, redis_url):
    for n in range(20):
        send_completion(app, n)
    send_completion(app, 99, account={})  # no account: no group call
    run_worker(app, redis_url)
    assert statuses(app) == {"sent": 21}
    assert segment.rejected == []
    by_type = collections.Counter(m["type"] for m in segment.messages)
    assert by_type == {"identify": 21, "track": 21, "group": 20}
    ids = segment.message_ids()
    assert len(ids) == len(set(ids)) == 62
    # One batch request carried them all.
    assert segment.requests == 1
    track = next(
        m
        for m in segment.messages
        if m["type"] == "track" and m["properties"]["response_id"] == "r-3"
    )
    assert track["event"] == "Survey Completed"
    assert track["context"]["groupId"] == "acct-42"
    assert track["properties"]["refiner_how_likely"] == 9
    identify = next(
        m for m in segment.messages if m["type"] == "identify" and m["userId"] == "u-1"
    )
    assert identify["traits"]["refiner_nps_group"] == "promoter"


def test_same_response_once_edit_delivered_again(app, segment, redis_url):
    send_completion(app, 1)
    run_worker(app, redis_url)
    send_completion(app, 1)  # same content: nothing new
    send_completion(app, 1, answers={"how_likely": 2})  # an edit
    run_worker(app, redis_url)
    assert statuses(app) == {"sent": 2}
    ids = segment.message_ids()
    assert len(ids) == len(set(ids)) == 6
    assert segment.duplicates == 0


def test_503_then_recovery_loses_nothing(make_app, segment, redis_url):
    # A backoff long enough that the retry cannot be due before the burst ends.
    app = make_app(REFINER_SEGMENT_BACKOFF_BASE=4.0, REFINER_SEGMENT_BACKOFF_MAX=4.0)
    segment.set_fault(status=503)
    for n in range(5):
        send_completion(app, n)
    run_worker(app, redis_url)
    rows = deliveries(app)
    assert {r.status for r in rows} == {"pending"}
    assert all(r.attempts == 1 and r.last_status_code == 503 for r in rows)
    assert all(r.next_attempt_at > r.created_at for r in rows)
    assert "503" in rows[0].reason
    segment.clear_faults()
    drain(app, redis_url, lambda: statuses(app) == {"sent": 5})
    assert len(segment.messages) == 15 and segment.duplicates == 0


def test_a_backoff_pushed_past_the_scheduled_retry_gets_a_turn(
    make_app, segment, redis_url
):
    """A retry is scheduled for the end of a backoff; when the workspace's
    backoff is pushed further meanwhile (one retry stays scheduled, the
    earlier), the turn that finds nothing due at the earlier time schedules
    the later one instead of leaving the workspace to the sweep."""
    app = make_app(
        REFINER_SEGMENT_BACKOFF_BASE=1.0,
        REFINER_SEGMENT_BACKOFF_MAX=1.0,
        REFINER_SEGMENT_SWEEP_INTERVAL=3600,
    )
    segment.set_fault(status=503)
    send_completion(app, 1)
    run_worker(app, redis_url)
    # On a slow machine the burst worker may have made the scheduled retry
    # too (it failed as well): the backoff ends after its last attempt.
    (first,) = deliveries(app)
    assert first.status == "pending" and first.attempts >= 1
    # As a later failed attempt would: the backoff now ends 3 s later.
    later = first.next_attempt_at + dt.timedelta(seconds=3)
    end_backoffs(app, later)
    segment.clear_faults()
    drain(app, redis_url, lambda: statuses(app) == {"sent": 1})
    assert dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) >= later
    assert len(segment.messages) == 3 and segment.duplicates == 0


def test_completions_during_a_backoff_wait_for_it(make_app, segment, redis_url):
    """Segment down: one probe per backoff, however many completions arrive
    meanwhile; when the backoff ends they all go in one batch."""
    app = make_app(  # a backoff no slow machine outlasts: 300 to 600 s
        REFINER_SEGMENT_BACKOFF_BASE=600.0, REFINER_SEGMENT_BACKOFF_MAX=600.0
    )
    segment.set_fault(status=503)
    send_completion(app, 1)
    run_worker(app, redis_url)
    assert segment.requests == 1
    for n in (2, 3, 4):
        send_completion(app, n)
        run_worker(app, redis_url)
    assert segment.requests == 1  # held back, not one probe per completion
    rows = deliveries(app)
    assert [(r.status, r.attempts) for r in rows] == [("pending", 1)] + [
        ("pending", 0)
    ] * 3
    # The backoff ends (as if its time had come); the next completion's turn
    # sends everything due in one batch request.
    end_backoffs(app)
    segment.clear_faults()
    send_completion(app, 5)
    drain(app, redis_url, lambda: statuses(app) == {"sent": 5})
    assert segment.requests == 2
    assert len(segment.messages) == 15 and segment.duplicates == 0


def test_retry_after_is_honoured(app, segment, redis_url):
    segment.set_fault(status=429, retry_after="2", times=1)
    send_completion(app, 1)
    before = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    run_worker(app, redis_url)
    (row,) = deliveries(app)
    assert row.status == "pending"
    assert row.next_attempt_at >= before + dt.timedelta(seconds=1.9)
    drain(app, redis_url, lambda: statuses(app) == {"sent": 1})


def test_connection_refused_then_server_starts(make_app, segment, redis_url):
    port = free_port()
    app = make_app(REFINER_SEGMENT_API_HOST=f"http://127.0.0.1:{port}")
    send_completion(app, 1)
    run_worker(app, redis_url)
    (row,) = deliveries(app)
    assert row.status == "pending" and row.last_status_code is None
    assert "refused" in row.reason.lower() or "connect" in row.reason.lower()
    server = serve(segment, port=port)
    try:
        drain(app, redis_url, lambda: statuses(app) == {"sent": 1})
    finally:
        server.shutdown()
    assert len(segment.messages) == 3


def test_read_timeout_is_retried(make_app, segment, redis_url):
    # A backoff long enough that the retry cannot be due before the burst ends.
    app = make_app(REFINER_SEGMENT_BACKOFF_BASE=4.0, REFINER_SEGMENT_BACKOFF_MAX=4.0)
    segment.set_fault(delay=1.5, times=1)
    send_completion(app, 1)
    run_worker(app, redis_url)
    (row,) = deliveries(app)
    assert row.status == "pending"
    assert "timed out" in row.reason.lower() or "timeout" in row.reason.lower()
    drain(app, redis_url, lambda: statuses(app) == {"sent": 1})


def test_400_fails_with_reason(app, segment, redis_url):
    segment.set_fault(status=400, times=1)
    send_completion(app, 1)
    failed: list[dict[str, t.Any]] = []
    with delivery_failed.connected_to(lambda s, **kw: failed.append(kw), app):
        run_worker(app, redis_url)
    (row,) = deliveries(app)
    assert (row.status, row.last_status_code) == ("failed", 400)
    assert "400" in row.reason
    assert failed and failed[0]["response_id"] == "r-1"


def test_one_bad_message_does_not_hold_the_batch_hostage(app, segment, redis_url):
    for n in range(6):
        send_completion(app, n)
    state = app.extensions["refiner_segment"]
    bad = deliveries(app)[3]
    from flask_refiner_segment.core.messages import BuildOptions
    from flask_refiner_segment.core.messages import build_messages

    messages = build_messages(
        json.loads(bad.payload),
        BuildOptions(library_version=state.version),
        workspace_id="default",
    )
    segment.set_fault(fail_message_ids=[messages[0]["messageId"]])
    run_worker(app, redis_url)
    assert statuses(app) == {"sent": 5, "failed": 1}
    assert {r.response_id for r in deliveries(app) if r.status == "failed"} == {"r-3"}
    assert len(segment.messages) == 15


def test_401_pauses_and_send_test_resumes(app, segment, redis_url):
    segment.set_fault(status=401)
    send_completion(app, 1)
    run_worker(app, redis_url)
    ext = app.extensions["refiner_segment"].owner
    with app.app_context():
        assert ext.settings().paused
    (row,) = deliveries(app)
    assert row.status == "pending" and "write key" in row.reason
    send_completion(app, 2)
    run_worker(app, redis_url)  # paused: nothing is attempted
    assert statuses(app) == {"pending": 2}
    segment.clear_faults()
    with app.app_context():
        assert ext.send_test().outcome == "ok"
        assert not ext.settings().paused
    drain(app, redis_url, lambda: statuses(app) == {"sent": 2})


def test_retry_window_gives_up(make_app, segment, redis_url):
    app = make_app(REFINER_SEGMENT_RETRY_WINDOW=0)
    segment.set_fault(status=500)
    send_completion(app, 1)
    run_worker(app, redis_url)
    (row,) = deliveries(app)
    assert row.status == "failed"
    assert row.reason.startswith("gave up after the retry window")
    segment.clear_faults()
    with app.app_context():
        assert app.extensions["refiner_segment"].owner.retry_failed() == 1
    run_worker(app, redis_url)
    assert statuses(app) == {"sent": 1}


def test_succeeded_signal(app, segment, redis_url):
    send_completion(app, 1)
    got: list[dict[str, t.Any]] = []
    with delivery_succeeded.connected_to(lambda s, **kw: got.append(kw), app):
        run_worker(app, redis_url)
    assert got[0]["response_ids"] == ["r-1"]


def test_batches_respect_size_limits(app, segment, redis_url):
    for n in range(60):
        send_completion(app, n, answers={"essay": "x" * 20_000})
    run_worker(app, redis_url)
    assert statuses(app) == {"sent": 60}
    assert segment.rejected == []
    assert segment.requests > 1  # 60 × ~60 KB does not fit one 500 KB request


def test_workspaces_are_delivered_separately(make_app, segment, redis_url):
    from flask_refiner_segment import workspaces
    from flask_refiner_segment.outbound.settings import write_key_values

    app = make_app(REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True)  # stand-in on 127.0.0.1
    state = app.extensions["refiner_segment"]
    with app.app_context():
        values = write_key_values(state, "wk_tenant_b")
        values.update(region="custom", custom_api_host=segment.url)
        workspaces.update(state, "tenant-b", values)
    send_completion(app, 1)
    send_completion(app, 2, workspace_id="tenant-b")
    run_worker(app, redis_url)
    assert statuses(app) == {"sent": 2}
    with app.app_context():
        table = state.tables.outbound.Delivery.__table__
        rows = state.db.session.execute(
            sa.select(table.c.workspace_id, table.c.response_id)
        ).all()
    assert sorted(rows) == [("default", "r-1"), ("tenant-b", "r-2")]
    assert segment.requests == 2


def test_one_job_drains_what_arrives_while_it_runs(app, segment, redis_url):
    """Completions recorded during a drain queue no second job; that job sends
    them (after its linger), then the next completion kicks a new job."""
    import redis
    from rq import Queue
    from rq.registry import FinishedJobRegistry

    segment.set_fault(delay=0.3)  # the first batch takes a while
    for n in range(5):
        send_completion(app, n)

    def more() -> None:
        deadline = time.monotonic() + 10
        while segment.requests < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # until the first batch is in flight
        for n in range(5, 10):
            send_completion(app, n)

    late = threading.Thread(target=more)
    late.start()
    run_worker(app, redis_url)  # burst: would also run a second queued job
    late.join()
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(app.extensions["refiner_segment"].config.queue, connection=connection)
    finished = FinishedJobRegistry(queue=queue)
    assert statuses(app) == {"sent": 10}
    assert len(segment.messages) == 30
    assert segment.requests >= 2  # the late five came in a later batch
    assert len(finished.get_job_ids()) == 1

    segment.clear_faults()
    send_completion(app, 11)  # the key is gone: this kicks a new job
    assert len(queue) == 1
    run_worker(app, redis_url)
    assert statuses(app) == {"sent": 11}
    connection.close()


def test_kicks_seen_are_reused_and_the_last_look_catches_up(
    make_app, segment, redis_url, monkeypatch
):
    """A process that saw a workspace's kick key skips Redis for
    KICK_CACHE_SECONDS; a completion it records after the turn claimed is
    still sent, by the turn's last look."""
    import redis

    app = make_app(REFINER_SEGMENT_KICK_CACHE_SECONDS=1.5)
    connection = redis.Redis.from_url(redis_url)
    state = app.extensions["refiner_segment"]
    asked: list[int] = []  # Redis commands of the request path, by thread
    original = state.redis.execute_command

    def counting(*args: t.Any, **kwargs: t.Any) -> t.Any:
        asked.append(threading.get_ident())
        return original(*args, **kwargs)

    monkeypatch.setattr(state.redis, "execute_command", counting)

    def calls() -> int:
        return asked.count(threading.get_ident())

    segment.set_fault(delay=0.5, times=1)  # the first batch takes a while
    send_completion(app, 1)  # the key is new: readied, a serve job queued
    done: list[bool] = []

    def late() -> None:
        deadline = time.monotonic() + 10
        while segment.requests < 1 and time.monotonic() < deadline:
            time.sleep(0.005)  # the turn claimed #1 and sends it
        send_completion(app, 2)  # finds the key taken: remembered, and counted
        before = calls()
        send_completion(app, 3)
        done.append(calls() == before)  # within the window: no Redis at all

    thread = threading.Thread(target=late)
    thread.start()
    run_worker(app, redis_url)  # the serve job waits for the last look
    thread.join()
    assert done == [True]
    assert statuses(app) == {"sent": 3}
    assert len(segment.messages) == 9
    assert segment.requests == 2  # #1, then #2 and #3 by the last look
    assert not connection.exists("refiner_segment:kick:default")
    connection.close()
