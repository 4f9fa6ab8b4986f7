"""Fault injection: nothing is lost, nothing is sent twice, and it recovers.

Each test sends a run of completions through a real fault and counts what
arrived. With ``REFINER_FAULT_REPORT=path`` set, a row per fault is appended to
that file (JSON lines); README.md's reliability table comes from such a run.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import typing as t

import pytest
import redis
import sqlalchemy as sa
from flask_refiner_segment.testing.embedded_redis import free_port
from flask_refiner_segment.testing.standin import serve
from rq import Worker

from .conftest import ROOT
from .conftest import RedisServer
from .conftest import cli_environment
from .conftest import drain
from .conftest import kill_worker
from .conftest import run_worker
from .conftest import send_completion
from .helpers import statuses
from .outage import database_outage
from .outage import engine_options

pytestmark = pytest.mark.faults

N = 40


def report(fault: str, sent: int, segment: t.Any, recovered_in: float) -> None:
    ids = segment.message_ids()
    row = {
        "fault": fault,
        "completions": sent,
        "messages_expected": sent * 3,
        "messages_delivered": len(set(ids)),
        "duplicates_at_segment": segment.duplicates,
        "recovered_in_s": round(recovered_in, 2),
    }
    path = os.environ.get("REFINER_FAULT_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    assert row["messages_delivered"] == row["messages_expected"]
    assert segment.rejected == []


def _recover(app: t.Any, redis_url: str, n: int, timeout: float = 30) -> float:
    started = time.monotonic()
    drain(app, redis_url, lambda: statuses(app) == {"sent": n}, timeout=timeout)
    return time.monotonic() - started


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500},
        {"status": 503},
        {"status": 429, "retry_after": "1"},
        {"delay": 1.0},  # hangs past the 0.5 s read timeout
    ],
    ids=["500", "503", "429-retry-after", "read-timeout"],
)
def test_segment_failing_during_a_run(app, segment, redis_url, fault):
    segment.set_fault(**fault)
    for n in range(N):
        send_completion(app, n)
        if n % 10 == 9:
            run_worker(app, redis_url)
    assert statuses(app)["sent"] == 0
    segment.clear_faults()
    recovered = _recover(app, redis_url, N)
    report(f"Segment answers {next(iter(fault.items()))}", N, segment, recovered)


def test_segment_down_connection_refused(make_app, segment, redis_url):
    port = free_port()
    app = make_app(REFINER_SEGMENT_API_HOST=f"http://127.0.0.1:{port}")
    for n in range(N):
        send_completion(app, n)
        if n % 10 == 9:
            run_worker(app, redis_url)
    assert statuses(app) == {"pending": N}
    server = serve(segment, port=port)
    try:
        recovered = _recover(app, redis_url, N)
    finally:
        server.shutdown()
    report("Segment down (connection refused)", N, segment, recovered)


def test_redis_down_while_completions_arrive(make_app, segment, tmp_path):
    redis_server = RedisServer(tmp_path)
    app = make_app(REFINER_SEGMENT_REDIS_URL=redis_server.url)
    for n in range(N):  # Redis is not running yet
        send_completion(app, n)
    assert statuses(app) == {"pending": N}
    redis_server.start()
    try:
        started = time.monotonic()
        with app.app_context():
            app.extensions["refiner_segment"].owner.requeue()
        recovered = _recover(app, redis_server.url, N) + (time.monotonic() - started)
    finally:
        redis_server.stop()
    report("Redis down while completions arrive", N, segment, recovered)


def test_redis_flushed_with_jobs_queued(app, segment, redis_url, redis_conn):
    for n in range(N):
        send_completion(app, n)
    redis_conn.flushdb()
    started = time.monotonic()
    with app.app_context():
        app.extensions["refiner_segment"].owner.requeue()
    recovered = _recover(app, redis_url, N)
    report("Redis flushed with jobs queued", N, segment, time.monotonic() - started)
    assert recovered >= 0


def _worker(env: dict[str, str], *, ready: bool = True) -> subprocess.Popen[bytes]:
    """``flask refiner-segment worker``; with ``ready``, once it has registered.

    Its stderr goes to a file that :func:`worker_log` reads.
    """
    log = tempfile.NamedTemporaryFile(prefix="refiner-worker-", suffix=".log")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "tests.hostapp:create_app",
            "refiner-segment",
            "worker",
        ],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    _logs[proc.pid] = log
    if ready:
        connection = redis.Redis.from_url(env["REFINER_SEGMENT_REDIS_URL"])
        deadline = time.monotonic() + 60
        while not any(w.pid == proc.pid for w in Worker.all(connection=connection)):
            assert proc.poll() is None, f"the worker exited: {worker_log(proc)}"
            assert time.monotonic() < deadline, "the worker did not register"
            time.sleep(0.05)
        connection.close()
    return proc


#: The stderr files of the workers :func:`_worker` started, by pid.
_logs: dict[int, t.IO[bytes]] = {}


def worker_log(proc: subprocess.Popen[bytes], tail: int | None = 4000) -> str:
    """What ``proc`` (from :func:`_worker`) wrote to stderr: its end, or all
    of it with ``tail=None``."""
    log = _logs[proc.pid]
    log.seek(0)
    text = log.read().decode(errors="replace")
    return text if tail is None else text[-tail:]


def _env(app_config: dict[str, t.Any], **extra: str) -> dict[str, str]:
    return cli_environment(app_config, **{"REFINER_SEGMENT_BATCH_SIZE": "10", **extra})


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    """SIGTERM (RQ's warm shutdown: the current job ends first), else SIGKILL."""
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            kill_worker(proc)
        log = _logs.pop(proc.pid, None)
        if log is not None:
            log.close()


def test_database_connections_dropped_while_sending(app, app_config, segment):
    """The worker's PostgreSQL connections are killed (as by a server restart)."""
    if not app_config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    url = sa.make_url(app_config["SQLALCHEMY_DATABASE_URI"]).update_query_dict(
        {"application_name": "refiner-fault-worker"}
    )
    env = _env(
        app_config, SQLALCHEMY_DATABASE_URI=url.render_as_string(hide_password=False)
    )
    segment.set_fault(delay=0.3)
    worker = _worker(env)
    db = app.extensions["test_db"]
    started = time.monotonic()
    try:
        for n in range(N):
            send_completion(app, 1000 + n)
        killed = 0
        deadline = time.monotonic() + 20
        while killed < 3 and time.monotonic() < deadline:
            with app.app_context(), db.engine.begin() as conn:
                killed += len(
                    conn.execute(
                        sa.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = 'refiner-fault-worker'"
                            # Not another suite's worker (CI runs two at once).
                            " AND datname = current_database()"
                        )
                    ).all()
                )
            time.sleep(0.2)
        segment.clear_faults()
        assert segment.wait_for(3 * N, timeout=60), (
            statuses(app),
            len(segment.messages),
            segment.duplicates,
            segment.rejected[:3],
            segment.requests,
        )
        deadline = time.monotonic() + 30
        while statuses(app) != {"sent": N}:
            assert time.monotonic() < deadline, statuses(app)
            time.sleep(0.2)
    finally:
        _stop(worker)
    assert killed >= 1
    report(
        "PostgreSQL connections killed while sending",
        N,
        segment,
        time.monotonic() - started,
    )


def test_worker_started_while_the_database_refuses(
    make_app, database_url, app_config, segment
):
    """The worker starts and recovers later instead of exiting on its first
    query (as it did with a traceback)."""
    options = engine_options(database_url)
    app = make_app(SQLALCHEMY_ENGINE_OPTIONS=options)
    env = _env(
        app_config,
        HOSTAPP_CREATE_TABLES="false",
        HOSTAPP_SQLALCHEMY_ENGINE_OPTIONS=json.dumps(options),
    )
    with database_outage(database_url):
        worker = _worker(env)
        assert worker.poll() is None
    started = time.monotonic()
    try:
        for n in range(N):
            send_completion(app, n)
        assert segment.wait_for(3 * N, timeout=60), statuses(app)
        deadline = time.monotonic() + 30
        while statuses(app) != {"sent": N}:
            assert time.monotonic() < deadline, statuses(app)
            time.sleep(0.2)
        recovered = time.monotonic() - started
        # All of it: a job that met SQLite's lock later (retried) logs more.
        log = worker_log(worker, tail=None)
    finally:
        _stop(worker)
    assert "The database refused the start-up recovery" in log, log[-4000:]
    report(
        "Worker started while the database refuses",
        N,
        segment,
        recovered,
    )


def test_two_workers_race_on_the_same_deliveries(app, app_config, segment):
    n = 200
    env = _env(app_config)
    workers = [_worker(env), _worker(env)]
    started = time.monotonic()
    try:
        for i in range(n):
            send_completion(app, i)
        assert segment.wait_for(3 * n, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        _stop(*workers)
    assert statuses(app) == {"sent": n}
    report("Two workers racing", n, segment, elapsed)
    assert segment.duplicates == 0  # claims are exclusive: nothing sent twice


def test_worker_killed_mid_batch(app, app_config, segment):
    segment.set_fault(delay=3.0, times=1)
    for n in range(N):
        send_completion(app, n)
    env = _env(
        app_config, REFINER_SEGMENT_LEASE_SECONDS="1", REFINER_SEGMENT_BATCH_SIZE="500"
    )
    worker = _worker({**env, "REFINER_SEGMENT_READ_TIMEOUT": "10"})
    try:
        deadline = time.monotonic() + 30
        while statuses(app).get("sending", 0) == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        kill_worker(worker)  # its work horse, mid-send, too
    started = time.monotonic()
    time.sleep(1.1)  # the dead worker's lease expires
    worker = _worker(env)  # a new worker recovers on start
    try:
        assert segment.wait_for(3 * N, timeout=60)
    finally:
        _stop(worker)
    report("Worker SIGKILLed mid-batch", N, segment, time.monotonic() - started)


def test_bad_message_does_not_hold_others(app, segment, redis_url):
    import json as _json

    from flask_refiner_segment.core.messages import BuildOptions
    from flask_refiner_segment.core.messages import build_messages

    for n in range(N):
        send_completion(app, n)
    state = app.extensions["refiner_segment"]
    with app.app_context():
        table = state.tables.outbound.Delivery.__table__
        payload = state.db.session.execute(
            sa.select(table.c.payload).where(table.c.response_id == "r-17")
        ).scalar_one()
    bad = build_messages(
        _json.loads(payload), BuildOptions(library_version=state.version)
    )[-1]["messageId"]
    segment.set_fault(fail_message_ids=[bad])
    started = time.monotonic()
    run_worker(app, redis_url)
    counts = collections.Counter(statuses(app))
    assert counts == {"sent": N - 1, "failed": 1}
    ids = segment.message_ids()
    assert len(ids) == len(set(ids)) == 3 * (N - 1)
    path = os.environ.get("REFINER_FAULT_REPORT")
    if path:
        with open(path, "a") as f:
            row = {
                "fault": "A 400 for one message inside a batch",
                "completions": N,
                "messages_expected": 3 * (N - 1),
                "messages_delivered": len(ids),
                "duplicates_at_segment": segment.duplicates,
                "recovered_in_s": round(time.monotonic() - started, 2),
            }
            f.write(json.dumps(row) + "\n")
