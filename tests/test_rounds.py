"""A serve round's database work for many workspaces at once, on SQLite and
PostgreSQL: one claim, one freeze and one fenced state change for all of them
(the serve jobs around it: test_jobs.py, test_faults_tenants.py)."""

from __future__ import annotations

import contextlib
import threading
import typing as t

import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.core.messages import BuildOptions
from flask_refiner_segment.outbound import claims
from flask_refiner_segment.outbound import frozen
from flask_refiner_segment.outbound import outbox
from flask_refiner_segment.outbound import serve
from flask_refiner_segment.tables import outbound as models
from flask_refiner_segment.tables.base import utcnow

from .conftest import run_worker
from .conftest import send_completion
from .test_faults_tenants import by_workspace
from .test_faults_tenants import requests_by_key
from .test_faults_tenants import tenant_app
from .test_faults_tenants import workspaces
from .test_outbox import FUTURE
from .test_outbox import insert
from .test_outbox import retry_result
from .test_outbox import row
from .test_outbox import rows
from .test_outbox import set_values
from .test_outbox import state_of


@contextlib.contextmanager
def statements(app: Flask) -> t.Iterator[list[str]]:
    """The statements run meanwhile, but ``SET LOCAL``."""
    seen: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if not statement.lstrip().upper().startswith("SET "):
            seen.append(statement.lstrip().split()[0].upper())

    with app.app_context():
        engine = state_of(app).db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def claim_many(app: Flask, limits: dict[str, int]) -> dict[str, list[t.Any]]:
    with app.app_context():
        return claims.claim_many(state_of(app), limits)


def test_one_claim_takes_each_workspace_up_to_its_limit(app):
    # ws-a has a backlog; ws-b two due; ws-c only a delivery due later.
    a = insert(app, *(row(n, "ws-a") for n in range(30)))
    b = insert(app, row(100, "ws-b"), row(101, "ws-b"))
    insert(app, row(200, "ws-c"))
    set_values(app, ["r-200"], next_attempt_at=FUTURE)
    insert(app, row(300, "ws-d"))  # not asked for
    with statements(app) as seen:
        claimed = claim_many(app, {"ws-a": 5, "ws-b": 5, "ws-c": 5})
    # One statement selects for all (PostgreSQL locks first), one leases.
    assert seen.count("UPDATE") == 1 and len(seen) <= 2
    assert sorted(claimed) == ["ws-a", "ws-b"]
    assert [r.id for r in claimed["ws-a"]] == a[:5]  # the oldest first
    assert [r.id for r in claimed["ws-b"]] == b
    tokens = {r.claim_token for rs in claimed.values() for r in rs}
    assert len(tokens) == 1  # one claim, fenced by one token
    found = rows(app)
    assert [found[f"r-{n}"].status for n in range(30)] == (
        [models.SENDING] * 5 + [models.PENDING] * 25
    )
    assert found["r-200"].status == found["r-300"].status == models.PENDING


def test_one_claim_for_more_workspaces_than_a_compound_select_holds(app):
    names = [f"ws-{n}" for n in range(2 * claims.ARMS + 5)]
    ids = insert(app, *(row(n, ws) for n, ws in enumerate(names)))
    claimed = claim_many(app, dict.fromkeys(names, 1))
    assert sorted(r.id for rs in claimed.values() for r in rs) == ids
    assert all(len(claimed[ws]) == 1 for ws in names)


def test_two_round_claims_at_once_never_share_a_row(app):
    names = ["ws-a", "ws-b", "ws-c"]
    ids = insert(app, *(row(n, names[n % 3]) for n in range(90)))
    barrier = threading.Barrier(2)
    got: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            barrier.wait(timeout=30)
            claimed = claim_many(app, dict.fromkeys(names, 30))
            got[slot] = [r.id for rs in claimed.values() for r in rs]
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not set(got[0]) & set(got[1])
    assert sorted(got[0] + got[1]) == ids


def test_a_rounds_outcomes_with_one_stale_claim_change_only_the_fresh_one(make_app):
    """Two workspaces claimed in one round; ws-a's lease expires and another
    worker claims its deliveries again. The round's outcomes, applied in one
    statement, change ws-b's deliveries and none of ws-a's."""
    app = make_app(REFINER_SEGMENT_LEASE_SECONDS=0)
    state = state_of(app)
    insert(app, row(1, "ws-a"), row(2, "ws-b"), row(3, "ws-b"))
    round_ = claim_many(app, {"ws-a": 10, "ws-b": 10})
    with app.app_context():
        outbox.release_stale(state)  # both leases expired
    fresh = claim_many(app, {"ws-a": 10})["ws-a"]  # another worker, ws-a only
    with app.app_context(), statements(app) as seen:
        changed, _ = outbox.transitions(
            state,
            [
                (round_["ws-a"], outbox.sent_values(state, 200)),
                (round_["ws-b"], outbox.sent_values(state, 200)),
            ],
        )
    assert seen.count("UPDATE") == 1
    assert changed == [[], []]  # ws-b was released too: nothing of this round
    round_b = claim_many(app, {"ws-b": 10})["ws-b"]
    with app.app_context(), statements(app) as seen:
        changed, _ = outbox.transitions(
            state,
            [
                (round_["ws-a"], outbox.sent_values(state, 200)),
                (round_b, outbox.sent_values(state, 200)),
            ],
        )
    assert seen.count("UPDATE") == 1
    assert changed == [[], [r.id for r in round_b]]
    found = rows(app)
    assert found["r-1"].status == models.SENDING  # still the other worker's
    assert found["r-1"].claim_token == fresh[0].claim_token
    assert found["r-1"].attempts == 0
    assert [found[r].status for r in ("r-2", "r-3")] == [models.SENT] * 2


def test_a_rounds_different_outcomes_go_in_one_statement(app):
    """Sent for one workspace, failed for a second, retried for a third (its
    other pending deliveries held back): one transaction, one ``UPDATE`` of
    the sent rows and one of the others, each row with its own outcome."""
    state = state_of(app)
    insert(app, row(1, "ws-a"), row(2, "ws-b"), row(3, "ws-c"), row(4, "ws-c"))
    claimed = claim_many(app, {"ws-a": 1, "ws-b": 1, "ws-c": 1})
    with app.app_context():
        failed, retry, next_at = outbox.retry_changes(
            state, claimed["ws-c"], retry_result()
        )
        with statements(app) as seen:
            changed, due = outbox.transitions(
                state,
                [
                    (claimed["ws-a"], outbox.sent_values(state, 200)),
                    (claimed["ws-b"], outbox.failed_values(state, "bad", 400)),
                    failed,
                    retry,
                ],
                bumps=[("ws-c", next_at)],
                due_of=["ws-a", "ws-b", "ws-c"],
            )
    # The sent rows, the failed and retried ones, then the hold-back.
    assert seen.count("UPDATE") == 3
    assert seen[-1] == "SELECT"  # when each workspace is due next
    assert changed == [
        [claimed["ws-a"][0].id],
        [claimed["ws-b"][0].id],
        [],
        [claimed["ws-c"][0].id],
    ]
    found = rows(app)
    assert (found["r-1"].status, found["r-1"].reason) == (models.SENT, None)
    assert found["r-1"].sent_at is not None and found["r-1"].last_status_code == 200
    assert (found["r-2"].status, found["r-2"].reason) == (models.FAILED, "bad")
    assert found["r-2"].last_status_code == 400 and found["r-2"].sent_at is None
    assert found["r-3"].status == models.PENDING
    assert found["r-3"].reason == "Segment answered 503 (retrying)"
    assert found["r-3"].next_attempt_at == next_at > utcnow()
    assert [found[r].attempts for r in ("r-1", "r-2", "r-3", "r-4")] == [1, 1, 1, 0]
    assert found["r-4"].next_attempt_at == next_at  # held back, not attempted
    assert {r.claim_token for r in found.values()} == {None}
    assert due == {"ws-c": next_at}


def test_one_freeze_for_the_workspaces_of_a_round(app):
    """Each workspace's messages are built with its own options; one fenced
    ``UPDATE`` stores them all, and a stale claim's are left out."""
    state = state_of(app)
    payload = (
        '{"user_id": "u-%d", "survey": {"id": "s", "name": "S", "questions": []},'
        ' "response": {"id": "r-%d", "completed_at": "2026-01-01T00:00:00Z",'
        ' "answers": {}}, "account": null, "user_traits": {}}'
    )
    insert(
        app,
        *(row(n, f"ws-{ws}", payload=payload % (n, n)) for n, ws in enumerate("abc")),
    )
    names = [f"ws-{ws}" for ws in "abc"]
    claimed = claim_many(app, dict.fromkeys(names, 10))
    set_values(app, ["r-2"], claim_token="another-claim")  # ws-c's went stale
    options = {
        ws: BuildOptions(event_name=f"Done in {ws}", library_version="1")
        for ws in names
    }
    with app.app_context(), statements(app) as seen:
        prepared = frozen.prepare_many(
            state, [(claimed[ws], options[ws], ws) for ws in names]
        )
    assert seen.count("UPDATE") == 1
    a, b, c = prepared
    assert not a.failed, a.failed
    assert [g[-1]["event"] for g in a.groups + b.groups] == [
        "Done in ws-a",
        "Done in ws-b",
    ]
    assert c.rows == [] and [r.id for r in c.lost] == [r.id for r in claimed["ws-c"]]
    found = rows(app)
    assert found["r-0"].messages == frozen.dumps(a.groups[0])
    assert found["r-1"].messages == frozen.dumps(b.groups[0])
    assert found["r-2"].messages is None


def test_a_serve_job_claims_for_many_workspaces_at_once(
    make_app, segment, redis_url, redis_conn
):
    """40 workspaces with a completion each, served by a real worker: the
    first round claims for up to ``TURNS_PER_THREAD`` × ``SEND_THREADS``
    (8 × 8) workspaces, here all 40, in one statement
    (a turn per workspace each claimed on its own before), and still every
    request carries one workspace's messages under its own write key."""
    app = tenant_app(make_app, 40)
    names = workspaces(40)
    segment.keep_bodies = True
    for n, ws in enumerate(names):
        send_completion(app, n, workspace_id=ws, user_id=f"{ws}:u-{n}")
    claims_seen: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if "SKIP LOCKED" in statement or "UNION ALL" in statement:
            claims_seen.append(statement)

    with app.app_context():
        engine = state_of(app).db.engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        run_worker(app, redis_url)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert {ws: c.get("sent") for ws, c in by_workspace(app).items()} == (
        dict.fromkeys(names, 1)
    )
    assert len(segment.messages) == 3 * 40 and segment.duplicates == 0
    sent = requests_by_key(segment)
    assert len(sent) == 40
    assert all(users == {key.split("_")[1]} for key, users in sent)
    assert 1 <= len(claims_seen) <= max(1, 40 - serve.TURNS_PER_THREAD * 8 + 1)
