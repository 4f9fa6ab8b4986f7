"""Fault injection on the drain side: what changes between attempts, workers
without RQ's scheduler, Segment down while completions keep arriving, and two
workers on one lease that expired mid-request.

Like test_faults.py, each test counts what reached the stand-in, and appends a
row to ``REFINER_FAULT_REPORT`` when it is set.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import typing as t

import pytest
from flask_refiner_segment.tables.base import utcnow
from rq import Queue

from .conftest import cli_environment
from .conftest import flask_cli
from .conftest import run_worker
from .conftest import send_completion
from .drain_support import flask_worker
from .drain_support import plain_worker
from .drain_support import stop
from .drain_support import wait_until
from .helpers import deliveries
from .helpers import statuses
from .test_faults import report
from .test_frozen import SLOW_BACKOFF
from .test_frozen import change_everything
from .test_frozen import without_sent_at

pytestmark = pytest.mark.faults

N = 40


def batches(segment: t.Any) -> list[list[dict[str, t.Any]]]:
    return [json.loads(body)["batch"] for body in segment.bodies]


def test_settings_and_version_changed_between_attempts(make_app, segment, redis_url):
    app = make_app(**SLOW_BACKOFF)
    segment.keep_bodies = True
    segment.set_fault(status=503, times=1)
    for n in range(N):
        send_completion(app, n)
    run_worker(app, redis_url)
    assert statuses(app) == {"pending": N} and len(segment.bodies) == 1
    change_everything(app)
    started = time.monotonic()
    wait_until(
        lambda: run_worker(app, redis_url) or statuses(app) == {"sent": N},
        what="all sent",
    )
    recovered = time.monotonic() - started
    first, retry = segment.bodies
    assert without_sent_at(retry) == without_sent_at(first)  # byte for byte
    assert segment.message_ids() == [m["messageId"] for m in batches(segment)[0]]
    report(
        "Settings and package version changed between attempts", N, segment, recovered
    )
    assert segment.duplicates == 0


def test_worker_without_a_scheduler(app, app_config, segment, redis_conn, tmp_path):
    """A plain RQ worker (no ``--with-scheduler``): the retry after a 503 waits
    in RQ's scheduled registry, and the warning says so in its log and in
    ``status``; the worker of ``flask refiner-segment worker``, also without a
    scheduler, delivers it by its own recovery poll."""
    env = cli_environment(
        app_config,
        REFINER_SEGMENT_RECOVERY_INTERVAL="1",
        REFINER_SEGMENT_BACKOFF_BASE="1",
        REFINER_SEGMENT_BACKOFF_MAX="1",
    )
    segment.set_fault(status=503, times=1)
    for n in range(N):
        send_completion(app, n)
    log = tmp_path / "plain.log"
    worker = plain_worker(env, "rq", log)
    try:
        wait_until(
            lambda: "No RQ scheduler is running for queue" in log.read_text(),
            what="the warning in the worker's log",
        )
        assert statuses(app) == {"pending": N}
        due = max(r.next_attempt_at for r in deliveries(app))
        wait_until(lambda: (utcnow() - due).total_seconds() > 2, what="overdue")
        queue = Queue(
            app.extensions["refiner_segment"].config.queue, connection=redis_conn
        )
        waiting = queue.scheduled_job_registry.get_job_ids()
        assert waiting  # the retry (and the sweep): never enqueued
        assert statuses(app) == {"pending": N} and segment.message_ids() == []
        status = json.loads(
            flask_cli(["refiner-segment", "status", "--json"], env).stdout
        )
        assert status["scheduler"] is False and status["pending"] == N
    finally:
        stop(worker)
    started = time.monotonic()
    worker = plain_worker(env, "recovering", tmp_path / "recovering.log")
    try:
        wait_until(lambda: statuses(app) == {"sent": N}, 30, "sent by the poll")
    finally:
        stop(worker)
    report(
        "Worker without RQ's scheduler (retry due; recovered by the worker's poll)",
        N,
        segment,
        time.monotonic() - started,
    )
    assert segment.duplicates == 0


def test_segment_down_while_completions_keep_arriving(
    app, app_config, segment, tmp_path
):
    """Segment answers 503 while a completion arrives every 40 ms: the worker
    probes once per backoff (0.5 to 1 s here), not once per completion, and
    sends everything once Segment is back."""
    env = cli_environment(
        app_config,
        REFINER_SEGMENT_BACKOFF_BASE="1",
        REFINER_SEGMENT_BACKOFF_MAX="1",
    )
    arrivals: list[float] = []
    segment.on_request = lambda: arrivals.append(time.monotonic())
    segment.set_fault(status=503)
    n = 60
    worker = flask_worker(env, tmp_path / "worker.log")
    try:
        for i in range(n):
            send_completion(app, i)
            time.sleep(0.04)
        probes = list(arrivals)
        segment.clear_faults()
        started = time.monotonic()
        wait_until(lambda: statuses(app) == {"sent": n}, 30, "sent after the outage")
        recovered = time.monotonic() - started
    finally:
        stop(worker)
    # Each probe comes after the backoff that the one before started, at least
    # half a step (0.5 s) later; 2 ms for the clocks of two processes.
    gaps = [later - earlier for earlier, later in itertools.pairwise(probes)]
    assert probes and min(gaps, default=0.5) >= 0.498, gaps
    report(
        f"Segment answers 503 while completions keep arriving ({len(probes)}"
        f" requests in {n * 0.04:.1f} s)",
        n,
        segment,
        recovered,
    )
    assert segment.duplicates == 0


def test_lease_expires_mid_request_and_another_worker_reclaims(
    app, app_config, segment, tmp_path
):
    """Worker A's request hangs past its lease; meanwhile the settings change
    and worker B claims the deliveries again. B resends A's messages as they
    were frozen; A's late answer changes nothing (fenced)."""
    env = cli_environment(
        app_config,
        REFINER_SEGMENT_LEASE_SECONDS="1",
        REFINER_SEGMENT_READ_TIMEOUT="30",
        REFINER_SEGMENT_RECOVERY_INTERVAL="60",
    )
    segment.keep_bodies = True
    in_flight = threading.Event()
    segment.on_request = in_flight.set
    segment.set_fault(delay=8.0, times=1)
    for n in range(N):
        send_completion(app, n)
    log_a = tmp_path / "a.log"
    worker_a = flask_worker(env, log_a)
    workers = [worker_a]
    try:
        assert in_flight.wait(30)
        started = time.monotonic()
        change_everything(app)
        wait_until(
            lambda: all(
                r.status == "sending" and r.lease_expires_at < utcnow()
                for r in deliveries(app)
            ),
            what="A's lease expired",
        )
        frozen_by_a = [r.messages for r in deliveries(app)]
        workers.append(flask_worker(env, tmp_path / "b.log"))  # recovers on start
        wait_until(lambda: statuses(app) == {"sent": N}, 30, "sent by B")
        wait_until(
            lambda: len(segment.messages) + segment.duplicates == 6 * N,
            30,
            "A's request answered",
        )
        wait_until(
            lambda: "claimed again meanwhile" in log_a.read_text(),
            30,
            "A's outcome dropped",
        )
        elapsed = time.monotonic() - started
    finally:
        stop(*workers)
    rows = deliveries(app)
    assert [r.messages for r in rows] == frozen_by_a  # nothing overwritten
    assert [r.attempts for r in rows] == [1] * N  # A's late answer: no change
    a_body, b_body = segment.bodies
    assert without_sent_at(a_body) == without_sent_at(b_body)
    assert sorted(segment.duplicate_ids) == sorted(segment.message_ids())
    report("Lease expired mid-request, another worker re-claimed", N, segment, elapsed)
    assert segment.duplicates == 3 * N  # the same messageIds, deduplicated
