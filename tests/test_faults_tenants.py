"""Many tenants: one workspace's Segment source failing while the others flow,
and a thousand workspaces shared by two worker processes. Real RQ workers
(``flask refiner-segment worker``), Redis and stand-in; nothing lost, nothing
sent twice, every request one workspace's."""

from __future__ import annotations

import json
import typing as t

import redis
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.outbound import settings
from flask_refiner_segment.workspaces import update
from rq import Worker

from .conftest import cli_environment
from .conftest import send_completion
from .drain_support import FLASK_WORKER
from .drain_support import flask_worker
from .drain_support import start_workers
from .drain_support import stop
from .drain_support import wait_until


def key_of(ws: str) -> str:
    return f"wk_{ws}_0001"


def tenant_app(make_app: t.Callable[..., Flask], count: int) -> Flask:
    """An app whose ``count`` workspaces each have their own write key."""
    app = make_app(REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True)
    state = app.extensions["refiner_segment"]
    with app.app_context():
        for ws in workspaces(count):
            values = settings.write_key_values(state, key_of(ws))
            host = state.config.api_host
            update(state, ws, {**values, "region": "custom", "custom_api_host": host})
    return app


def workspaces(count: int) -> list[str]:
    return [f"t{i:04d}" for i in range(count)]


def by_workspace(app: Flask) -> dict[str, dict[str, int]]:
    """Per workspace: deliveries per status, and the most attempts of one."""
    state = app.extensions["refiner_segment"]
    table = state.tables.outbound.Delivery.__table__
    found: dict[str, dict[str, int]] = {}
    with app.app_context(), state.db.engine.connect() as conn:
        query = sa.select(
            table.c.workspace_id,
            table.c.status,
            sa.func.count(),
            sa.func.max(table.c.attempts),
        ).group_by(table.c.workspace_id, table.c.status)
        for ws, status, n, attempts in conn.execute(query):
            counts = found.setdefault(ws, {})
            counts[status] = n
            counts["attempts"] = max(counts.get("attempts", 0), attempts)
    return found


def requests_by_key(segment: t.Any) -> list[tuple[str, set[str]]]:
    """Each request answered 2xx: its write key and the workspaces of its
    messages (from their user ids)."""
    found = []
    for raw in segment.bodies:
        body = json.loads(raw)
        found.append(
            (body["writeKey"], {m["userId"].split(":")[0] for m in body["batch"]})
        )
    return found


def env_for(app_config: dict[str, t.Any], **extra: str) -> dict[str, str]:
    return cli_environment(
        app_config,
        REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS="true",
        REFINER_SEGMENT_RECOVERY_INTERVAL="1",
        **extra,
    )


def test_one_source_answering_503_does_not_hold_back_99_others(
    make_app, app_config, segment, tmp_path
):
    app = tenant_app(make_app, 100)
    failing, *others = workspaces(100)
    segment.set_fault(status=503, write_key=key_of(failing))
    worker = flask_worker(env_for(app_config), tmp_path / "worker.log")
    try:
        for round_ in range(3):
            for i, ws in enumerate([failing, *others]):
                n = round_ * 100 + i
                send_completion(app, n, workspace_id=ws, user_id=f"{ws}:u-{n}")
        # The 99 others are all sent while the failing source keeps failing
        # (retried, with backoff): what it answers holds back no one else.
        wait_until(
            lambda: all(
                by_workspace(app).get(ws) == {"sent": 3, "attempts": 1} for ws in others
            ),
            90,
            "the 99 others sent",
        )
        stuck = by_workspace(app)[failing]
        assert stuck.get("sent") is None and stuck["attempts"] >= 1
        assert stuck.get("pending", 0) + stuck.get("sending", 0) == 3
        wait_until(lambda: by_workspace(app)[failing]["attempts"] >= 3, 60)
        assert len(segment.messages) == 3 * 3 * 99
        segment.clear_faults()  # the source recovers: nothing was lost
        wait_until(lambda: by_workspace(app)[failing].get("sent") == 3, 60)
    finally:
        stop(worker)
    assert len(segment.messages) == 3 * 3 * 100 and segment.duplicates == 0
    users = [m["userId"] for m in segment.messages]
    assert users[-9:] == sorted(users[-9:], key=lambda u: int(u.split("-")[-1]))
    assert {u.split(":")[0] for u in users[-9:]} == {failing}


def test_a_thousand_workspaces_shared_by_two_workers(
    make_app, app_config, segment, redis_url, tmp_path
):
    app = tenant_app(make_app, 1000)
    names = workspaces(1000)
    segment.keep_bodies = True
    # All 1,000 are due before the two workers start (together), and each turn
    # takes at least 20 ms (one worker alone would take 10 s): more is due
    # than one serve job takes, so it starts another, which the other worker
    # runs. With the workers started first, a producer slower than one worker
    # (a loaded machine) never made a second job, and the test timed out.
    segment.set_fault(delay=0.02)
    for n, ws in enumerate(names):
        send_completion(app, n, workspace_id=ws, user_id=f"{ws}:u-{n}")
    env = env_for(app_config, REFINER_SEGMENT_SEND_THREADS="2")
    logs = [tmp_path / f"worker-{k}.log" for k in (1, 2)]
    workers = start_workers(env, FLASK_WORKER, logs)
    connection = redis.Redis.from_url(redis_url)
    try:
        wait_until(lambda: len(segment.messages) >= 3000, 300, "3,000 messages")

        def jobs_done() -> list[int]:
            return [w.successful_job_count for w in Worker.all(connection=connection)]

        # Each worker took turns: its serve jobs ended when nothing was due.
        wait_until(lambda: sorted(jobs_done())[0] >= 1, 30, "both workers served")
    finally:
        stop(*workers)
        connection.close()
    counts = by_workspace(app)
    assert {ws: c.get("sent") for ws, c in counts.items()} == dict.fromkeys(names, 1)
    assert len(segment.messages) == 3000 and segment.duplicates == 0
    assert not segment.rejected
    # One write key per request, and it is the workspace's own.
    sent = requests_by_key(segment)
    assert all(users == {key.split("_")[1]} for key, users in sent)
    assert {next(iter(users)) for _, users in sent} == set(names)
