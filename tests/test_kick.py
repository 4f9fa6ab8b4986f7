"""flask_refiner_segment.outbound.kick: the kick key, the ready set and serve
jobs by dotted path, scheduled retries, the sweep, requeue; on a real Redis and RQ.

A turn's use of the kick key (end_turn's count, the last look) is tested end
to end in test_jobs.py.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.outbound import kick
from flask_refiner_segment.outbound import ready
from flask_refiner_segment.outbound import record
from flask_refiner_segment.tables import outbound as models
from flask_refiner_segment.testing.embedded_redis import free_port
from rq import Queue
from rq.job import Job


def state_of(app: Flask) -> t.Any:
    return app.extensions["refiner_segment"]


def queue_of(app: Flask, redis_conn: t.Any) -> Queue:
    return Queue(state_of(app).config.queue, connection=redis_conn)


def queued(app: Flask, redis_conn: t.Any) -> list[Job]:
    return list(queue_of(app, redis_conn).jobs)


def waiting(redis_conn: t.Any) -> list[str]:
    """The workspaces in the ready set, earliest first."""
    return [w.decode() for w in redis_conn.zrange(ready.READY_KEY, 0, -1)]


def scheduled(app: Flask, redis_conn: t.Any) -> list[tuple[Job, dt.datetime]]:
    """Jobs in the scheduled registry with their time, earliest first."""
    queue = queue_of(app, redis_conn)
    registry = queue.scheduled_job_registry
    jobs = [Job.fetch(i, connection=redis_conn) for i in registry.get_job_ids()]
    return sorted(
        ((job, registry.get_scheduled_time(job)) for job in jobs),
        key=lambda pair: pair[1],
    )


def pending_row(workspace_id: str, n: int) -> dict[str, t.Any]:
    return {
        "workspace_id": workspace_id,
        "response_id": f"r-{n}",
        "survey_id": "s",
        "user_id": "u",
        "payload": f'{{"n":{n}}}',
        "nps_score": None,
    }


def test_kick_creates_the_key_readies_the_workspace_and_queues_one_serve_job(
    app, redis_conn
):
    state = state_of(app)
    with app.app_context():
        assert kick.kick(state, "ws-a") is True
    key = kick.kick_key("ws-a")
    assert redis_conn.get(key) == b"1"  # SET NX "0", then INCR
    assert 0 < redis_conn.pttl(key) <= state.config.kick_ttl * 1000
    assert waiting(redis_conn) == ["ws-a"]
    assert redis_conn.exists(ready.serve_key(0))
    (job,) = queued(app, redis_conn)
    assert job.func_name == "flask_refiner_segment.outbound.jobs.serve"
    assert job.func_name == kick.SERVE_JOB
    assert job.args == (0,)
    assert job.kwargs == {}
    # The job carries the configured timeout and RQ retries, nothing secret.
    assert job.timeout == state.config.job_timeout
    assert job.retries_left == len(state.config.job_retry_intervals)
    assert state.config.write_key not in repr(job.args)


def test_kicks_of_many_workspaces_queue_one_serve_job(app, redis_conn):
    state = state_of(app)
    with app.app_context():
        assert kick.kick(state, "ws-a")
        assert kick.kick(state, "ws-a")
        assert kick.kick(state, "ws-a")
        assert kick.kick(state, "ws-b")  # another workspace has its own key
    assert [job.args for job in queued(app, redis_conn)] == [(0,)]
    assert waiting(redis_conn) == ["ws-a", "ws-b"]  # in the order kicked
    # Every caller that found the key taken was counted.
    assert redis_conn.get(kick.kick_key("ws-a")) == b"3"
    assert redis_conn.get(kick.kick_key("ws-b")) == b"1"


def test_a_kick_after_the_serve_job_left_queues_another(app, redis_conn):
    state = state_of(app)
    with app.app_context():
        assert kick.kick(state, "ws-a")
        redis_conn.delete(ready.serve_key(0))  # the job stopped
        assert kick.kick(state, "ws-b")
    assert [job.args for job in queued(app, redis_conn)] == [(0,), (0,)]


def test_reuse_skips_redis_after_finding_the_key_taken(make_app, redis_conn):
    # A window far longer than the test: what it skips does not depend on timing.
    app = make_app(REFINER_SEGMENT_KICK_CACHE_SECONDS=3600)
    state = state_of(app)
    with app.app_context():
        assert kick.kick(state, "ws-a")  # created: nothing remembered
        redis_conn.delete(kick.kick_key("ws-a"), ready.READY_KEY)
        assert kick.kick(state, "ws-a", reuse=True)  # created again: readied
        assert waiting(redis_conn) == ["ws-a"]
        assert kick.kick(state, "ws-a", reuse=True)  # found taken: remembered
        redis_conn.delete(kick.kick_key("ws-a"), ready.READY_KEY)
        # Within the window a reusing kick does not ask Redis at all...
        assert kick.kick(state, "ws-a", reuse=True)
        assert not redis_conn.exists(kick.kick_key("ws-a"))
        assert waiting(redis_conn) == []
        # ... only for that workspace; and a kick without reuse always asks.
        assert kick.kick(state, "ws-b", reuse=True)
        assert kick.kick(state, "ws-a")
    assert redis_conn.exists(kick.kick_key("ws-a"), kick.kick_key("ws-b")) == 2
    assert waiting(redis_conn) == ["ws-b", "ws-a"]


def test_reuse_with_a_zero_window_asks_redis_every_time(make_app, redis_conn):
    app = make_app(REFINER_SEGMENT_KICK_CACHE_SECONDS=0)
    state = state_of(app)
    with app.app_context():
        assert kick.kick(state, "ws-a")
        assert kick.kick(state, "ws-a", reuse=True)  # found taken
        redis_conn.delete(kick.kick_key("ws-a"), ready.READY_KEY)
        assert kick.kick(state, "ws-a", reuse=True)
    assert redis_conn.get(kick.kick_key("ws-a")) == b"1"
    assert waiting(redis_conn) == ["ws-a"]


def test_end_turn_deletes_the_key_or_keeps_it_for_a_last_look(app, redis_conn):
    state = state_of(app)
    with app.app_context():
        kick.kick(state, "ws-a")
        kick.kick(state, "ws-b")
        kick.kick(state, "ws-b", reuse=True)  # another process counted on it
    assert ready.pop(redis_conn, 10) == (["ws-a", "ws-b"], 0)
    # Only its creator counted on ws-a's key: the turn ends, the key goes.
    assert ready.end_turn(state, redis_conn, "ws-a") is False
    assert not redis_conn.exists(kick.kick_key("ws-a"))
    # ws-b's: kept, count reset, and a last look KICK_CACHE_SECONDS later.
    before = time.time()
    assert ready.end_turn(state, redis_conn, "ws-b") is True
    assert redis_conn.get(kick.kick_key("ws-b")) == b"1"
    [(ws, due)] = redis_conn.zrange(ready.READY_KEY, 0, -1, withscores=True)
    assert ws == b"ws-b" and due >= before + state.config.kick_cache_seconds
    assert ready.pop(redis_conn, 10) == ([], 0)  # not due yet
    assert ready.end_turn(state, redis_conn, "ws-b") is False  # nobody since
    # A foreign value, or a key gone (expired): a last look, to be sure.
    redis_conn.set(kick.kick_key("ws-c"), b"not-a-count")
    assert ready.end_turn(state, redis_conn, "ws-c") is True
    assert ready.end_turn(state, redis_conn, "ws-d") is True


def test_kick_returns_false_when_redis_is_unreachable(make_app, caplog):
    app = make_app(REFINER_SEGMENT_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    state = state_of(app)
    with app.app_context():
        assert kick.kick(state, "ws-a") is False
        assert kick.kick(state, "ws-a", reuse=True) is False
    assert "Redis unavailable" in caplog.text
    assert "'ws-a'" in caplog.text


def test_schedule_retry_keeps_the_earliest(app, redis_conn):
    state = state_of(app)
    queue = queue_of(app, redis_conn)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    later = now + dt.timedelta(seconds=200, microseconds=300)
    with app.app_context():
        kick.schedule_retry(state, queue, "ws-a", later)
        ((job, at),) = scheduled(app, redis_conn)
        assert job.func_name == kick.DELIVER_JOB and job.args == ("ws-a",)
        # RQ's scheduler works in seconds: rounded up, never early.
        stamp = math.ceil(later.replace(tzinfo=dt.timezone.utc).timestamp())
        assert at.replace(tzinfo=dt.timezone.utc).timestamp() == stamp
        assert float(redis_conn.get(kick.retry_key("ws-a"))) == stamp
        # A later or equal time is covered by the one scheduled.
        kick.schedule_retry(state, queue, "ws-a", later + dt.timedelta(seconds=100))
        kick.schedule_retry(state, queue, "ws-a", later)
        assert len(scheduled(app, redis_conn)) == 1
        # An earlier one is scheduled too, and becomes the one to beat.
        sooner = now + dt.timedelta(seconds=100)
        kick.schedule_retry(state, queue, "ws-a", sooner)
        times = [at for _, at in scheduled(app, redis_conn)]
        assert len(times) == 2
        sooner_stamp = math.ceil(sooner.replace(tzinfo=dt.timezone.utc).timestamp())
        assert times[0].replace(tzinfo=dt.timezone.utc).timestamp() == sooner_stamp
        assert float(redis_conn.get(kick.retry_key("ws-a"))) == sooner_stamp
        # Another workspace has its own.
        kick.schedule_retry(state, queue, "ws-b", later)
    assert sorted(job.args for job, _ in scheduled(app, redis_conn)) == [
        ("ws-a",),
        ("ws-a",),
        ("ws-b",),
    ]
    assert redis_conn.ttl(kick.retry_key("ws-a")) > 100


def test_schedule_retry_replaces_a_retry_time_already_past(app, redis_conn):
    state = state_of(app)
    queue = queue_of(app, redis_conn)
    now = dt.datetime.now(dt.timezone.utc)
    redis_conn.set(kick.retry_key("ws-a"), str(now.timestamp() - 60))
    with app.app_context():
        kick.schedule_retry(
            state, queue, "ws-a", now.replace(tzinfo=None) + dt.timedelta(seconds=60)
        )
    assert len(scheduled(app, redis_conn)) == 1
    assert float(redis_conn.get(kick.retry_key("ws-a"))) > now.timestamp()


def test_schedule_sweep_keeps_exactly_one(make_app, redis_conn):
    app = make_app(REFINER_SEGMENT_SWEEP_INTERVAL=30)
    state = state_of(app)
    queue = queue_of(app, redis_conn)
    before = dt.datetime.now(dt.timezone.utc)
    with app.app_context():
        assert kick.schedule_sweep(state, queue) is True
        assert kick.schedule_sweep(state, queue) is False
        assert kick.schedule_sweep(state, queue) is False
    ((job, at),) = scheduled(app, redis_conn)
    assert job.func_name == "flask_refiner_segment.outbound.jobs.sweep"
    assert job.args == ()
    assert at.timestamp() >= before.timestamp() + 29  # about now + SWEEP_INTERVAL
    assert 0 < redis_conn.ttl(kick.SWEEP_KEY) <= 60
    assert queued(app, redis_conn) == []  # scheduled, not queued now
    # The running sweep reschedules itself with force.
    with app.app_context():
        assert kick.schedule_sweep(state, queue, force=True) is True
    assert len(scheduled(app, redis_conn)) == 2


def _insert(app: Flask, rows: list[dict[str, t.Any]]) -> None:
    with app.app_context():
        for row in rows:
            assert record.insert_pending(state_of(app), row)


def _set(app: Flask, response_id: str, **values: t.Any) -> None:
    state = state_of(app)
    table = state.tables.outbound.Delivery.__table__
    with app.app_context(), state.db.engine.begin() as conn:
        conn.execute(
            table.update().where(table.c.response_id == response_id).values(**values)
        )


def _status(app: Flask) -> dict[str, str]:
    state = state_of(app)
    table = state.tables.outbound.Delivery.__table__
    with app.app_context(), state.db.engine.connect() as conn:
        return dict(conn.execute(sa.select(table.c.response_id, table.c.status)).all())


@pytest.mark.parametrize("force", [False, True])
def test_requeue_releases_stale_claims_and_kicks_each_workspace(app, redis_conn, force):
    state = state_of(app)
    _insert(
        app,
        [pending_row("ws-a", 1), pending_row("ws-a", 2), pending_row("ws-b", 3)],
    )
    _insert(app, [pending_row("ws-c", 4), pending_row("ws-d", 5)])
    past = dt.datetime(2000, 1, 1)
    future = dt.datetime(2999, 1, 1)
    _set(app, "r-4", status=models.SENDING, lease_expires_at=past)
    _set(app, "r-5", status=models.SENDING, lease_expires_at=future)
    # A kick key left by a job that was lost would block a plain kick.
    redis_conn.set(kick.kick_key("ws-a"), b"1")
    with app.app_context():
        result = kick.requeue(state, force=force)
    released = 2 if force else 1
    assert result == {"released": released, "workspaces": 2 + released}
    expected = {"ws-a", "ws-b", "ws-c"} | ({"ws-d"} if force else set())
    assert sorted(waiting(redis_conn)) == sorted(expected)
    assert [job.func_name for job in queued(app, redis_conn)] == [kick.SERVE_JOB]
    assert _status(app)["r-5"] == (models.PENDING if force else models.SENDING)
    assert _status(app)["r-4"] == models.PENDING


def test_retry_failed_kicks_the_workspaces_of_what_it_retried(app, redis_conn):
    state = state_of(app)
    _insert(app, [pending_row("ws-a", 1), pending_row("ws-b", 2)])
    _insert(app, [pending_row("ws-b", 3), pending_row("ws-c", 4)])
    for rid in ("r-1", "r-2", "r-3"):
        _set(app, rid, status=models.FAILED)
    with app.app_context():
        assert kick.retry_failed(state, "ws-b") == 2
        assert waiting(redis_conn) == ["ws-b"]
        assert kick.retry_failed(state) == 1
    assert sorted(waiting(redis_conn)) == ["ws-a", "ws-b"]
    assert set(_status(app).values()) == {models.PENDING}
