"""Retention of the outbox: which deliveries a prune removes, in bounded batches,
from the periodic sweep (a real RQ worker), and that user segments never change.
On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.outbound import retention
from flask_refiner_segment.state import EXTENSION_KEY
from flask_refiner_segment.tables.base import utcnow
from rq import Queue

from .conftest import run_worker
from .inbound_support import close_app
from .test_segments import WS
from .test_segments import cond
from .test_segments import delivery
from .test_segments import insert_data
from .test_segments import make_seg_app
from .test_segments import members
from .test_segments import response

OLD = utcnow() - dt.timedelta(days=45)
YOUNG = utcnow() - dt.timedelta(days=3)


@pytest.fixture
def ret_app(database_url: str) -> t.Iterator[Flask]:
    app = make_seg_app(database_url)
    yield app
    close_app(app)


def row(
    n: int,
    status: str,
    updated_at: dt.datetime,
    workspace_id: str = WS,
    user_id: str = "u1",
    score: int = 9,
) -> dict[str, t.Any]:
    """A delivery row whose last change was at ``updated_at``."""
    values = delivery(user_id, "nps", {"how_likely": score}, response_id=f"r{n}")
    values.update(
        workspace_id=workspace_id,
        status=status,
        created_at=updated_at,
        updated_at=updated_at,
        next_attempt_at=updated_at if status == "pending" else None,
    )
    if status == "skipped":
        values.update(payload=None, content_hash=None, reason="survey not selected")
    return values


def remaining(app: Flask) -> list[tuple[str, str]]:
    """(workspace, response id) of every delivery left."""
    state = app.extensions[EXTENSION_KEY]
    table = state.tables.outbound.Delivery.__table__
    with app.app_context(), state.db.engine.connect() as conn:
        return sorted(
            (r.workspace_id, r.response_id)
            for r in conn.execute(sa.select(table.c.workspace_id, table.c.response_id))
        )


def prune(app: Flask, *args: t.Any, **kwargs: t.Any) -> retention.Pruned:
    with app.app_context():
        return retention.prune(app.extensions[EXTENSION_KEY], *args, **kwargs)


def test_prune_removes_only_old_finished_deliveries(ret_app: Flask) -> None:
    insert_data(
        ret_app,
        {},
        deliveries=[
            row(1, "sent", OLD),
            row(2, "failed", OLD),
            row(3, "skipped", OLD),
            row(4, "pending", OLD),  # never pruned, however old
            row(5, "sending", OLD),
            row(6, "sent", YOUNG),
            row(7, "failed", YOUNG),
            row(8, "sent", OLD, workspace_id="tenant-b"),
        ],
    )
    result = prune(ret_app, 30, workspace_id=WS)
    assert result.by_status == {"sent": 1, "failed": 1, "skipped": 1}
    assert (result.total, result.batches, result.more) == (3, 1, False)
    left = [(WS, f"r{n}") for n in (4, 5, 6, 7)] + [("tenant-b", "r8")]
    assert remaining(ret_app) == left
    # Without a workspace: every workspace. The default age is the config's 30.
    assert prune(ret_app).by_status == {"sent": 1}
    assert remaining(ret_app) == left[:-1]
    # A shorter retention reaches the younger finished ones, never the others.
    assert prune(ret_app, 1).by_status == {"sent": 1, "failed": 1}
    assert prune(ret_app, 0).total == 0
    assert remaining(ret_app) == [(WS, "r4"), (WS, "r5")]


def test_prune_deletes_in_bounded_batches(ret_app: Flask) -> None:
    insert_data(ret_app, {}, deliveries=[row(n, "sent", OLD) for n in range(7)])
    first = prune(ret_app, 30, batch_size=2, max_batches=2)
    assert (first.total, first.batches, first.more) == (4, 2, True)
    assert len(remaining(ret_app)) == 3
    rest = prune(ret_app, 30, batch_size=2)
    assert (rest.total, rest.batches, rest.more) == (3, 2, False)
    assert remaining(ret_app) == []


def test_prune_keeps_everything_when_retention_is_off(make_app: t.Any) -> None:
    app = make_app(REFINER_SEGMENT_DELIVERY_RETENTION_DAYS=None)
    insert_data(app, {}, deliveries=[row(1, "sent", OLD)])
    assert prune(app).total == 0
    assert prune(app, 30).total == 1  # an explicit age still prunes


def test_bad_arguments_are_refused(ret_app: Flask) -> None:
    with pytest.raises(ValueError, match="days must be >= 0"):
        prune(ret_app, -1)
    with pytest.raises(ValueError, match="batch_size"):
        prune(ret_app, 1, batch_size=0)
    assert prune(ret_app, 10**9).total == 0  # older than year 1: nothing


SEGMENTS = [
    cond("survey_completed", survey_id="nps"),
    cond("answer", survey_id="nps", question="how_likely", op="gte", value=9),
    cond("answer", survey_id="nps", question="how_likely", op="exists"),
    cond("nps_group", value="promoter"),
    cond("nps_group", value="detractor", survey_id="nps"),
]


def test_pruning_changes_no_segment_membership(ret_app: Flask) -> None:
    """Each completion has its delivery (sent, failed or pending) and its
    response row, as the receiver records them; pruning removes deliveries."""
    scores = {"u1": 10, "u2": 3, "u3": 9, "u4": 6}
    status = {"u1": "sent", "u2": "sent", "u3": "failed", "u4": "pending"}
    deliveries, responses = [], []
    for n, (user, score) in enumerate(scores.items()):
        deliveries.append(row(n, status[user], OLD, user_id=user, score=score))
        responses.append(
            response(user, "nps", {"how_likely": score}, response_id=f"r{n}")
        )
    insert_data(ret_app, dict.fromkeys(scores, {}), deliveries=deliveries)
    insert_data(ret_app, {}, responses=responses)
    expected = [
        ["u1", "u2", "u3", "u4"],
        ["u1", "u3"],
        ["u1", "u2", "u3", "u4"],
        ["u1", "u3"],
        ["u2", "u4"],
    ]
    before = [members(ret_app, rules) for rules in SEGMENTS]
    assert prune(ret_app, 30).total == 3
    assert remaining(ret_app) == [(WS, "r3")]  # the pending one
    after = [members(ret_app, rules) for rules in SEGMENTS]
    assert after == before
    # u3's delivery failed at Segment: u3 completed the survey all the same.
    assert before == expected


def test_the_sweep_job_prunes_on_a_real_worker(
    app: Flask, redis_url: str, redis_conn: t.Any
) -> None:
    insert_data(
        app,
        {},
        deliveries=[
            row(1, "sent", OLD),
            row(2, "failed", OLD),
            row(3, "sent", YOUNG),
        ],
    )
    state = app.extensions[EXTENSION_KEY]
    job = Queue(state.config.queue, connection=redis_conn).enqueue(
        "flask_refiner_segment.outbound.jobs.sweep"
    )
    run_worker(app, redis_url)
    job.refresh()
    assert job.is_finished, job.latest_result()
    assert job.return_value()["pruned"] == 2
    assert remaining(app) == [(WS, "r3")]
