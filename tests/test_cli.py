"""``flask refiner-segment`` commands, run as a user runs them (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import typing as t

import pytest

from .conftest import ROOT
from .conftest import cli_environment
from .conftest import flask_cli
from .conftest import kill_worker
from .conftest import send_completion
from .helpers import statuses


@pytest.fixture
def cli_env(app: t.Any, app_config: dict[str, t.Any]) -> dict[str, str]:
    """The environment that points ``flask --app tests.hostapp`` at the test's parts."""
    return cli_environment(
        app_config,
        REFINER_SEGMENT_READ_TIMEOUT="0.5",
        REFINER_SEGMENT_LEASE_SECONDS="1",
    )


def test_worker_burst_delivers_everything(app, segment, cli_env):
    for n in range(30):
        send_completion(app, n)
    result = flask_cli(["refiner-segment", "worker", "--burst"], cli_env)
    assert result.returncode == 0, result.stderr
    assert statuses(app) == {"sent": 30}
    assert len(segment.messages) == 90
    assert len(set(segment.message_ids())) == 90
    assert segment.rejected == []
    status = flask_cli(["refiner-segment", "status", "--json"], cli_env)
    assert json.loads(status.stdout)["sent"] == 30


def test_status_and_retry_failed(app, segment, cli_env):
    segment.set_fault(status=400)
    send_completion(app, 1)
    assert flask_cli(["refiner-segment", "worker", "--burst"], cli_env).returncode == 0
    out = flask_cli(["refiner-segment", "status"], cli_env).stdout
    assert "failed   1" in out
    segment.clear_faults()
    out = flask_cli(["refiner-segment", "retry-failed"], cli_env).stdout
    assert "Queued 1 failed deliveries again." in out
    assert flask_cli(["refiner-segment", "worker", "--burst"], cli_env).returncode == 0
    assert statuses(app) == {"sent": 1}


def test_send_test(app, segment, cli_env):
    result = flask_cli(["refiner-segment", "send-test"], cli_env)
    assert result.returncode == 0, result.stderr
    assert "Segment answered: 200" in result.stdout
    assert [m["event"] for m in segment.messages] == ["Segment Test Event"]
    assert segment.messages[0]["properties"]["test"] is True
    segment.set_fault(status=401)
    result = flask_cli(["refiner-segment", "send-test"], cli_env)
    assert result.returncode == 1
    assert "401" in result.stdout
    assert cli_env["REFINER_SEGMENT_WRITE_KEY"] not in result.stdout + result.stderr


def test_send_test_without_key(app, cli_env):
    result = flask_cli(
        ["refiner-segment", "send-test"], {**cli_env, "REFINER_SEGMENT_WRITE_KEY": ""}
    )
    assert result.returncode == 1
    assert (
        "No Segment write key" in result.stderr
        or "no Segment write key" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_redis_flushed_then_requeue(app, segment, cli_env, redis_conn):
    for n in range(10):
        send_completion(app, n)
    redis_conn.flushdb()  # every queued job is gone
    assert (
        flask_cli(
            ["refiner-segment", "worker", "--burst"],
            {**cli_env, "REFINER_SEGMENT_LEASE_SECONDS": "30"},
        ).returncode
        == 0
    )
    # The worker recovers on start (it runs `requeue` first).
    assert statuses(app) == {"sent": 10}
    redis_conn.flushdb()
    out = flask_cli(["refiner-segment", "requeue"], cli_env).stdout
    assert "queued delivery for 0 workspace(s)" in out


def test_worker_killed_mid_batch_loses_nothing(app, segment, cli_env):
    # Segment answers slowly, so the worker is killed while a batch is in flight.
    segment.set_fault(delay=3.0, times=1)
    for n in range(10):
        send_completion(app, n)
    env = {**os.environ, **cli_env, "REFINER_SEGMENT_READ_TIMEOUT": "10"}
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
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        # Claimed, and the request at Segment (the claim comes first: killed
        # between the two, the delay would hit the next worker's request).
        while statuses(app).get("sending", 0) == 0 or segment.requests == 0:
            assert time.monotonic() < deadline, "the worker never sent the batch"
            time.sleep(0.05)
    finally:
        kill_worker(proc)  # its work horse, mid-send, too
    assert statuses(app) == {"sending": 10}
    time.sleep(1.1)  # the lease (1 s) of the dead worker expires
    out = flask_cli(["refiner-segment", "requeue"], cli_env).stdout
    assert "Released 10 stale deliveries" in out
    assert flask_cli(["refiner-segment", "worker", "--burst"], cli_env).returncode == 0
    assert statuses(app) == {"sent": 10}
    # The killed batch may have reached Segment too: same messageIds, deduplicated.
    assert len(set(segment.message_ids())) == 30


def test_prune_prints_what_it_removed(app, cli_env):
    from .test_retention import OLD
    from .test_retention import YOUNG
    from .test_retention import insert_data
    from .test_retention import remaining
    from .test_retention import row

    insert_data(
        app,
        {},
        deliveries=[
            row(1, "sent", OLD),
            row(2, "failed", OLD),
            row(3, "pending", OLD),
            row(4, "sent", YOUNG),
            row(5, "sent", OLD, workspace_id="tenant-b"),
        ],
    )
    cmd = ["refiner-segment", "prune"]
    out = flask_cli([*cmd, "--workspace", "default"], cli_env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        "Removed 2 deliveries older than 30 days in workspace 'default'"
        " (1 sent, 1 failed, 0 skipped) in 1 batch(es).\n"
    )
    out = flask_cli([*cmd, "--days", "1"], cli_env)
    assert out.returncode == 0, out.stderr
    assert "Removed 2 deliveries older than 1 days (2 sent," in out.stdout
    assert remaining(app) == [("default", "r3")]
    huge = flask_cli(["refiner-segment", "prune", "--days", "999999999"], cli_env)
    assert huge.returncode == 0, huge.stderr
    assert "Removed 0 deliveries older than 999999999 days" in huge.stdout


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--days", "-1"], {}, "Invalid value for '--days': -1 is not in the range"),
        (["--days", "soon"], {}, "Invalid value for '--days': 'soon' is not"),
        (
            [],
            {"REFINER_SEGMENT_DELIVERY_RETENTION_DAYS": "null"},
            "REFINER_SEGMENT_DELIVERY_RETENTION_DAYS is None (keep forever)",
        ),
    ],
)
def test_prune_refuses_bad_input_clearly(app, cli_env, args, env, message):
    out = flask_cli(["refiner-segment", "prune", *args], {**cli_env, **env})
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr


def test_status_shows_host_pause_and_oldest_pending(app, segment, cli_env):
    out = flask_cli(["refiner-segment", "status"], cli_env).stdout
    assert "oldest pending: none" in out
    assert f"host: {segment.url}" in out
    assert "deliveries: enabled" in out
    send_completion(app, 1)  # no worker: it waits
    data = json.loads(
        flask_cli(["refiner-segment", "status", "--json"], cli_env).stdout
    )
    assert data["pending"] == 1
    assert data["oldest_pending_seconds"] is not None
    assert data["oldest_pending_seconds"] >= 0
    assert data["api_host"] == segment.url
    assert data["paused"] is False
    out = flask_cli(["refiner-segment", "status"], cli_env).stdout
    assert "oldest pending: " in out and " ago" in out
    segment.set_fault(status=401)
    assert flask_cli(["refiner-segment", "send-test"], cli_env).returncode == 1
    out = flask_cli(["refiner-segment", "status"], cli_env).stdout
    assert "PAUSED: Segment rejected the write key" in out
    data = json.loads(
        flask_cli(["refiner-segment", "status", "--json"], cli_env).stdout
    )
    assert data["paused"] is True
    assert cli_env["REFINER_SEGMENT_WRITE_KEY"] not in out
