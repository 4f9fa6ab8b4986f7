"""The drain side's guarantees: one drain job per workspace under load, recovery
without RQ's scheduler (and a loud warning when nothing runs the retries), and
a bounded wait after an outage. Real Redis, RQ workers and stand-in."""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import typing as t

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.config import DEFAULTS
from flask_refiner_segment.outbound import kick
from flask_refiner_segment.outbound import outbox
from flask_refiner_segment.outbound import ready
from flask_refiner_segment.outbound.drain import Drain
from flask_refiner_segment.tables.base import utcnow
from rq import Queue
from rq.job import Job
from rq.scheduler import RQScheduler

from .conftest import cli_environment
from .conftest import flask_cli
from .conftest import run_worker
from .conftest import send_completion
from .drain_support import flask_worker
from .drain_support import stop
from .drain_support import wait_until
from .helpers import deliveries
from .helpers import end_backoffs
from .helpers import statuses

URL = "/integrations/segment/"


def state_of(app: Flask) -> t.Any:
    return app.extensions["refiner_segment"]


def queue_of(app: Flask, connection: redis.Redis) -> Queue:
    return Queue(state_of(app).config.queue, connection=connection)


def deliver_jobs(queue: Queue) -> int:
    """Drain jobs (serve jobs, or a workspace's deliver job) waiting in ``queue``."""
    drains = (kick.DELIVER_JOB, kick.SERVE_JOB)
    return sum(1 for job in queue.get_jobs() if job.func_name in drains)


# -- one drain job per workspace ---------------------------------------------


def test_keep_kick_renews_the_key_for_kick_ttl_and_never_creates_it(
    make_app, redis_conn
):
    app = make_app(REFINER_SEGMENT_KICK_TTL=2)
    state = state_of(app)
    key = kick.kick_key("ws-a")
    kick.keep_kick(state, redis_conn, "ws-a")
    assert not redis_conn.exists(key)  # a drain whose key is gone recreates none
    redis_conn.set(key, b"1", px=100)
    kick.keep_kick(state, redis_conn, "ws-a")
    assert 1000 < redis_conn.pttl(key) <= 2000  # a dead drain's key ends soon


def test_a_scheduled_retry_leaves_the_workspace_to_the_drain_holding_the_key(
    app, segment, redis_conn
):
    send_completion(app, 1)
    state = state_of(app)
    queue = queue_of(app, redis_conn)
    queue.empty()
    assert redis_conn.exists(kick.kick_key("default"))  # the kick's job holds it
    with app.app_context():
        stats = Drain(state, "default", queue, scheduled=True).run()
    assert stats["requests"] == 0 and statuses(app) == {"pending": 1}
    redis_conn.delete(kick.kick_key("default"))
    with app.app_context():
        stats = Drain(state, "default", queue, scheduled=True).run()
    assert stats["sent"] == 1 and not redis_conn.exists(kick.kick_key("default"))


def test_one_drain_job_at_a_time_under_steady_load(
    make_app, app_config, segment, redis_url, redis_conn, tmp_path
):
    """A drain longer than KICK_TTL (a backlog, slow answers), completions
    arriving all along: while it sends, no other drain job is waiting (with
    more workers it would run beside it)."""
    env = cli_environment(
        app_config,
        REFINER_SEGMENT_KICK_TTL="1",
        REFINER_SEGMENT_BATCH_SIZE="2",
        REFINER_SEGMENT_READ_TIMEOUT="5",
    )
    app = make_app(REFINER_SEGMENT_KICK_TTL=1)  # the kicks' side
    queue = queue_of(app, redis.Redis.from_url(redis_url))
    waiting: list[int] = []
    segment.on_request = lambda: waiting.append(deliver_jobs(queue))
    segment.set_fault(delay=0.25)
    worker = flask_worker(env, tmp_path / "worker.log")
    backlog = 20  # 10 requests of 2: longer than KICK_TTL on its own
    try:
        for n in range(backlog):
            send_completion(app, n)
        for i in range(backlog, backlog + 30):
            send_completion(app, i)  # each one kicks (KICK_CACHE_SECONDS apart)
            threading.Event().wait(0.1)
        n = backlog + 30
        segment.clear_faults()
        wait_until(lambda: statuses(app) == {"sent": n}, 60, "all sent")
    finally:
        stop(worker)
    assert len(segment.message_ids()) == 3 * n and segment.duplicates == 0
    assert len(waiting) >= 10
    assert max(waiting) == 0, waiting


# -- recovery without the scheduler; the warning -----------------------------


def test_status_says_whether_a_scheduler_runs(app, app_config, redis_conn):
    env = cli_environment(app_config)
    out = flask_cli(["refiner-segment", "status", "--json"], env)
    assert json.loads(out.stdout)["scheduler"] is False
    text = flask_cli(["refiner-segment", "status"], env).stdout
    assert "scheduler NOT RUNNING" in text and "pending" in text
    scheduler = RQScheduler([queue_of(app, redis_conn)], connection=redis_conn)
    assert scheduler.acquire_locks()
    try:
        out = flask_cli(["refiner-segment", "status", "--json"], env)
        status = json.loads(out.stdout)
        assert status["scheduler"] is True and status["pending"] == 0
        assert (
            "scheduler running" in flask_cli(["refiner-segment", "status"], env).stdout
        )
    finally:
        scheduler.release_locks()


def test_a_retry_scheduled_without_a_scheduler_logs_a_warning(
    app, segment, redis_url, redis_conn, caplog
):
    segment.set_fault(status=503)
    send_completion(app, 1)
    with caplog.at_level(logging.WARNING, "flask_refiner_segment"):
        run_worker(app, redis_url)  # burst: its scheduler stopped before the job
    warnings = [r.getMessage() for r in caplog.records if "RQ scheduler" in r.message]
    assert warnings and "No RQ scheduler is running for queue" in warnings[0]
    caplog.clear()
    end_backoffs(app)  # the next completion's turn attempts (and fails) again
    scheduler = RQScheduler([queue_of(app, redis_conn)], connection=redis_conn)
    assert scheduler.acquire_locks()
    try:
        send_completion(app, 2)  # the kick queues a drain job at once
        with caplog.at_level(logging.WARNING, "flask_refiner_segment"):
            run_worker(app, redis_url)
    finally:
        scheduler.release_locks()
    assert all(r.attempts >= 1 for r in deliveries(app))
    assert not [r for r in caplog.records if "RQ scheduler" in r.message]


def test_settings_page_warns_when_deliveries_wait_and_no_scheduler_runs(
    app, segment, redis_url, redis_conn
):
    app.extensions["refiner_segment"].owner.settings_guard(lambda: True)
    client = app.test_client()
    assert 'id="scheduler-banner"' not in client.get(URL).get_data(as_text=True)
    segment.set_fault(status=503)
    send_completion(app, 1)
    run_worker(app, redis_url)
    assert statuses(app) == {"pending": 1}
    html = client.get(URL).get_data(as_text=True)
    assert 'id="scheduler-banner"' in html and "No RQ scheduler is running" in html
    scheduler = RQScheduler([queue_of(app, redis_conn)], connection=redis_conn)
    assert scheduler.acquire_locks()
    try:
        html = client.get(URL).get_data(as_text=True)
    finally:
        scheduler.release_locks()
    assert 'id="scheduler-banner"' not in html


def test_a_recovery_round_kicks_due_workspaces_once_per_interval(app, redis_conn):
    state = state_of(app)
    queue = queue_of(app, redis_conn)
    send_completion(app, 1)
    queue.empty()
    # Its job was lost: the keys it held end within KICK_TTL.
    redis_conn.delete(kick.kick_key("default"), ready.serve_key(0))
    with app.app_context():
        assert kick.recover(state, queue) == {"released": 0, "workspaces": 1}
        assert kick.recover(state, queue) is None  # another worker's round
    assert deliver_jobs(queue) == 1
    end_backoffs(app, utcnow() + dt.timedelta(hours=1))
    queue.empty()
    redis_conn.delete(
        kick.kick_key("default"), ready.serve_key(0), ready.READY_KEY, kick.RECOVERY_KEY
    )
    with app.app_context():
        assert kick.recover(state, queue) == {"released": 0, "workspaces": 0}
    assert deliver_jobs(queue) == 0  # in backoff: its retry is scheduled


def test_after_a_redis_flush_the_worker_brings_back_the_sweep_and_the_retries(
    app, app_config, segment, redis_conn, tmp_path
):
    """Segment fails, then Redis loses every scheduled retry and the sweep: a
    running ``flask refiner-segment worker`` recovers on its own."""
    env = cli_environment(
        app_config,
        REFINER_SEGMENT_SWEEP_INTERVAL="30",
        REFINER_SEGMENT_RECOVERY_INTERVAL="1",
        REFINER_SEGMENT_BACKOFF_BASE="2",
        REFINER_SEGMENT_BACKOFF_MAX="3",
    )
    segment.set_fault(status=503)
    worker = flask_worker(env, tmp_path / "worker.log")
    try:
        wait_until(lambda: redis_conn.exists(kick.SWEEP_KEY), what="the sweep")
        for n in range(10):
            send_completion(app, n)
        wait_until(
            lambda: (
                all(r.attempts > 0 for r in deliveries(app))
                and statuses(app) == {"pending": 10}
            ),
            what="every delivery attempted once",
        )
        redis_conn.flushdb()
        segment.clear_faults()
        wait_until(lambda: statuses(app) == {"sent": 10}, 30, "sent after the flush")
        wait_until(lambda: redis_conn.exists(kick.SWEEP_KEY), 30, "the sweep again")
    finally:
        stop(worker)
    assert len(set(segment.message_ids())) == 30


# -- resuming after an outage --------------------------------------------------


@pytest.fixture
def default_backoff_app(make_app: t.Callable[..., Flask]) -> Flask:
    """The retry policy's defaults (the test config shortens them)."""
    return make_app(
        REFINER_SEGMENT_BACKOFF_BASE=DEFAULTS["BACKOFF_BASE"],
        REFINER_SEGMENT_BACKOFF_MAX=DEFAULTS["BACKOFF_MAX"],
        REFINER_SEGMENT_RETRY_AFTER_MAX=DEFAULTS["RETRY_AFTER_MAX"],
        REFINER_SEGMENT_RECOVERY_INTERVAL=DEFAULTS["RECOVERY_INTERVAL"],
    )


def test_the_default_backoff_keeps_the_next_attempt_within_a_minute(
    default_backoff_app,
):
    config = state_of(default_backoff_app).config
    # The scheduler's whole-second rounding and its one-second polling, or a
    # worker's recovery poll, come on top of the backoff.
    assert config.backoff_max + 2 <= 60
    assert config.backoff_max + config.recovery_interval <= 60
    delays = [
        outbox.backoff(state_of(default_backoff_app), attempts, None)
        for attempts in (1, 5, 10, 50, 1000)
        for _ in range(200)
    ]
    assert max(delays) <= config.backoff_max
    assert min(delays[-200:]) >= config.backoff_max / 2  # jittered, not hammering
    # Retry-After stays a floor, capped.
    assert outbox.backoff(state_of(default_backoff_app), 50, 120.0) == 120.0
    assert outbox.backoff(state_of(default_backoff_app), 1, 10_000.0) == 300.0


def test_after_many_failed_attempts_the_retry_is_scheduled_within_a_minute(
    default_backoff_app, segment, redis_url, redis_conn
):
    app = default_backoff_app
    state = state_of(app)
    send_completion(app, 1)
    table = state.tables.outbound.Delivery.__table__
    with app.app_context(), state.db.engine.begin() as conn:
        conn.execute(table.update().values(attempts=40))
    segment.set_fault(status=503)
    before = utcnow()
    run_worker(app, redis_url)
    [row] = deliveries(app)
    assert row.status == "pending" and row.attempts == 41
    assert row.next_attempt_at - before <= dt.timedelta(
        seconds=state.config.backoff_max
    )
    registry = queue_of(app, redis_conn).scheduled_job_registry
    [job] = [
        j
        for j in Job.fetch_many(registry.get_job_ids(), connection=redis_conn)
        if j is not None and j.func_name == kick.DELIVER_JOB
    ]
    at = registry.get_scheduled_time(job).replace(tzinfo=None)
    assert at - before <= dt.timedelta(seconds=state.config.backoff_max + 1)
    with app.app_context(), state.db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 1
