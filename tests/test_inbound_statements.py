"""How inbound requests are written: one statement per request on PostgreSQL.

A request of plain calls is one autocommit statement on PostgreSQL, whatever
its size; SQLite keeps the transaction of several statements. Both must store
the same rows for the same requests, and dedupe by ``messageId`` alike.
"""

from __future__ import annotations

import json
import threading
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask

from .helpers import postgres_only
from .inbound_support import TABLES
from .inbound_support import alias
from .inbound_support import close_app
from .inbound_support import counts
from .inbound_support import group
from .inbound_support import identify
from .inbound_support import make_app
from .inbound_support import page
from .inbound_support import post
from .inbound_support import screen
from .inbound_support import track

#: Columns that differ between two runs of the same requests.
VOLATILE = {"id", "received_at", "updated_at"}


@pytest.fixture
def inbound_app(database_url: str) -> t.Iterator[Flask]:
    app = make_app(database_url)
    yield app
    close_app(app)


def dump(app: Flask) -> dict[str, list[tuple[t.Any, ...]]]:
    """Every inbound row but its volatile columns, in a comparable form."""
    db = app.extensions["test_db"]
    out = {}
    with app.app_context(), db.engine.connect() as conn:
        for name in TABLES:
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            columns = [c for c in table.c if c.name not in VOLATILE]
            rows = conn.execute(sa.select(*columns)).all()
            out[name] = sorted(
                tuple(
                    json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v
                    for v in row
                )
                for row in rows
            )
    return out


def requests() -> list[t.Any]:
    """Requests that exercise every rule of the store, in order."""
    at = "2026-03-01T10:00:{:02d}.000Z".format
    return [
        # Out of order and equal times in one batch: the newest, then the
        # later message, wins per trait key; a duplicate id is stored once.
        {
            "batch": [
                identify("i-1", "u1", at(5), {"plan": "pro", "seats": "42"}),
                identify("i-2", "u1", at(3), {"plan": "free", "nested": {"a": 1}}),
                identify("i-3", "u1", at(5), {"plan": "team", "flag": None}),
                identify("i-1", "u1", at(9), {"plan": "ignored"}),
                identify("i-4", "u2", at(1), {"ünïcode": "✓", "list": [1, 2]}),
                identify("i-5", None, at(1), {"plan": "nobody"}),
            ]
        },
        # Groups: account spans, links and account traits, two users.
        {
            "batch": [
                group("g-1", "u1", "acct-1", at(7), {"tier": "gold", "n": 3}),
                group("g-2", "u2", "acct-1", at(2), {"tier": "silver"}),
                group("g-3", "u1", "acct-2", at(4), {"tier": 7}),
                group("g-4", "u1", "acct-1", at(1), {"tier": "bronze"}),
            ]
        },
        # Calls, in order; one message alone.
        {
            "batch": [
                track("t-1", "u1", "Signed In", at(8), {"total": 5}),
                page("p-1", "u2", at(6)),
                track("t-2", "u3", "Order Completed", at(2), {}),
                screen("s-1", "u1", at(0)),
                track("t-3", "u1", "Signed In", at(9), {"total": 7}),
            ]
        },
        track("t-4", "u4", "Alone", at(1), {"x": [1, {"y": None}]}),
        # A retried batch that overlaps the first and the third.
        {
            "batch": [
                identify("i-2", "u1", at(3), {"plan": "retried"}),
                track("t-2", "u3", "Order Completed", at(2), {}),
                identify("i-6", "u1", at(5), {"plan": "last"}),
                track("t-5", "u1", "Signed In", at(9), {"total": 9}),
            ]
        },
        # Alias takes the transaction on both databases.
        {"batch": [alias("a-1", "u5", "u4"), track("t-6", "u5", "After", at(3))]},
    ]


@postgres_only
def test_postgres_stores_what_sqlite_stores(database_url, tmp_path):
    apps = [make_app(f"sqlite:///{tmp_path / 'same.db'}"), make_app(database_url)]
    try:
        for body in requests():
            lite, pg = (post(app, body) for app in apps)
            assert (lite.status_code, pg.status_code) == (200, 200), body
            assert lite.get_json() == pg.get_json(), body
        lite_rows, pg_rows = (dump(app) for app in apps)
        assert pg_rows == lite_rows
        assert len(pg_rows["refiner_segment_event"]) == 6
        traits = {r[1:3]: r[3] for r in pg_rows["refiner_segment_user_trait"]}
        assert traits[("u1", "plan")] == "last"
    finally:
        for app in apps:
            close_app(app)


def test_answers_count_new_and_duplicate_ids(inbound_app):
    answers = [post(inbound_app, body).get_json() for body in requests()]
    assert [(a["stored"], a["duplicates"], a["ignored"]) for a in answers] == [
        (4, 1, 1),
        (4, 0, 0),
        (5, 0, 0),
        (1, 0, 0),
        (2, 2, 0),
        (2, 0, 0),
    ]
    again = [post(inbound_app, body).get_json() for body in requests()]
    assert sum(a["stored"] for a in again) == 0
    assert counts(inbound_app)["refiner_segment_event"] == 6


def _statements(app: Flask, body: t.Any) -> list[str]:
    """The SQL statements the database received for one request."""
    with app.app_context():
        engine = app.extensions["test_db"].engine
    seen: list[str] = []

    def record(conn: t.Any, cursor: t.Any, statement: str, *args: t.Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert post(app, body).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    return seen


@postgres_only
def test_one_statement_per_request_on_postgres(database_url, inbound_app):
    post(inbound_app, track("warm-up"))  # the API key lookup, then cached
    assert len(_statements(inbound_app, track("one"))) == 1
    batch = [
        [identify, track, group, page, screen][i % 5](f"m-{i}", f"u{i % 7}")
        for i in range(100)
    ]
    assert len(_statements(inbound_app, {"batch": batch})) == 1
    assert len(_statements(inbound_app, {"batch": batch})) == 1  # all duplicates
    stored = counts(inbound_app)
    assert stored["refiner_segment_inbound_message"] == 102
    assert stored["refiner_segment_event"] == 22


@postgres_only
def test_concurrent_duplicates_are_stored_once_on_postgres(database_url, inbound_app):
    post(inbound_app, track("warm-up"))
    threads = 8
    barrier = threading.Barrier(threads)
    answers: list[t.Any] = [None] * threads

    def deliver(i: int) -> None:
        barrier.wait(timeout=30)
        # Every thread the same message, and one of its own for the same user.
        body = {"batch": [track("same", "u1"), identify(f"own-{i}", "u1")]}
        answers[i] = post(inbound_app, body)

    workers = [threading.Thread(target=deliver, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [a.status_code for a in answers] == [200] * threads
    assert sum(a.get_json()["stored"] for a in answers) == threads + 1
    assert sum(a.get_json()["duplicates"] for a in answers) == threads - 1
    stored = counts(inbound_app)
    assert stored["refiner_segment_event"] == 2  # warm-up and "same"
    assert stored["refiner_segment_inbound_message"] == threads + 2
