"""Real faults: concurrent deliveries, a database dying mid-request, no database.

- Two processes post the same batches at once (PostgreSQL): stored once, no deadlock.
- The connection is killed mid-transaction (PostgreSQL) or the commit cannot get
  its lock (SQLite): 503 JSON, nothing partial stored, a retry stores it all.
- No database at all: 503 JSON, never a 500.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment import RefinerSegment
from flask_refiner_segment.inbound import queries as api
from flask_sqlalchemy import SQLAlchemy

from .inbound_support import API_KEY
from .inbound_support import close_app
from .inbound_support import counts
from .inbound_support import group
from .inbound_support import identify
from .inbound_support import make_app
from .inbound_support import nothing_stored
from .inbound_support import post
from .inbound_support import track

ROUNDS = 4
PER_ROUND = 120


def round_batch(n: int, process: int, disjoint: bool) -> list[dict[str, t.Any]]:
    """Round ``n``'s messages: the same ids in both processes unless ``disjoint``.

    Every message touches the same ten users, so the two transactions compete
    for the same profile and trait rows either way.
    """
    messages = []
    for i in range(PER_ROUND):
        mid = f"r{n}-{'p' + str(process) + '-' if disjoint else ''}{i}"
        user = f"u{i % 10}"
        at = f"2026-05-01T00:{n:02d}:{i % 60:02d}.{process:03d}Z"
        kind = i % 3
        if kind == 0:
            messages.append(
                identify(mid, user, at, {"round": n, "by": process, "i": i})
            )
        elif kind == 1:
            messages.append(track(mid, user, "Clicked", at, {"i": i}))
        else:
            messages.append(group(mid, user, f"g{i % 4}", at, {"round": n}))
    if process == 1:
        messages.reverse()
    return messages


def _poster(
    database_url: str, process: int, barrier: t.Any, results: t.Any
) -> None:  # pragma: no cover - runs in a child process
    app = make_app(database_url)
    try:
        for n in range(ROUNDS):
            disjoint = n % 2 == 1
            batch = round_batch(n, process, disjoint)
            barrier.wait(timeout=30)
            start = time.time()
            response = post(app, {"batch": batch})
            span = (start, time.time())
            results.put((n, process, response.status_code, response.get_json(), span))
    finally:
        with app.app_context():
            app.extensions["test_db"].engine.dispose()


@pytest.mark.postgres
def test_two_processes_post_the_same_batch_at_once(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("concurrency is tested against PostgreSQL")
    app = make_app(database_url)
    try:
        ctx = multiprocessing.get_context("spawn")
        barrier = ctx.Barrier(2)
        results = ctx.Queue()
        procs = [
            ctx.Process(target=_poster, args=(database_url, p, barrier, results))
            for p in (0, 1)
        ]
        for proc in procs:
            proc.start()
        answers = [results.get(timeout=60) for _ in range(2 * ROUNDS)]
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
        # The barrier made the two requests of a round run at the same time.
        spans = {(a[0], a[1]): a[4] for a in answers}
        assert any(
            spans[(n, 0)][0] < spans[(n, 1)][1] and spans[(n, 1)][0] < spans[(n, 0)][1]
            for n in range(ROUNDS)
        ), spans
        for n in range(ROUNDS):
            mine = [a for a in answers if a[0] == n]
            assert [a[2] for a in mine] == [200, 200], mine
            stored = sum(a[3]["stored"] for a in mine)
            duplicates = sum(a[3]["duplicates"] for a in mine)
            if n % 2 == 0:  # the same messages: each stored once
                assert (stored, duplicates) == (PER_ROUND, PER_ROUND), mine
            else:  # different messages for the same users: all stored
                assert (stored, duplicates) == (2 * PER_ROUND, 0), mine
        rows = counts(app)
        per_pair = PER_ROUND // 3
        assert rows["refiner_segment_inbound_message"] == 6 * PER_ROUND
        assert rows["refiner_segment_event"] == 6 * per_pair
        assert rows["refiner_segment_profile"] == 10
        # The newest identify wins: round 3, process 1 (its timestamps are .001 later).
        with app.app_context():
            traits = api.get_profile("u0")["traits"]
        assert traits["round"] == 3 and traits["by"] == 1
    finally:
        close_app(app)


# -- a database fault in the middle of a request -----------------------------------


def test_connection_killed_mid_transaction_503_nothing_partial(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip(
            "PostgreSQL: the server ends the backend; SQLite: see the commit test"
        )
    app = make_app(database_url)
    with app.app_context():
        engine = app.extensions["test_db"].engine
    admin = sa.create_engine(database_url)
    killed = []

    def kill_backend(conn: t.Any, cursor: t.Any, statement: str, *args: t.Any) -> None:
        if "INSERT INTO refiner_segment_user_trait" in statement and not killed:
            pid = conn.connection.dbapi_connection.info.backend_pid
            with admin.connect() as other:
                other.execute(
                    sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}
                )
            killed.append(pid)

    batch = {"batch": [track("k-1"), identify("k-2"), group("k-3")]}
    try:
        sa.event.listen(engine, "before_cursor_execute", kill_backend)
        response = post(app, batch)
        sa.event.remove(engine, "before_cursor_execute", kill_backend)
        assert killed
        assert response.status_code == 503
        assert response.is_json and response.json["error"] == "unavailable"
        assert response.headers["Retry-After"]
        assert nothing_stored(app)  # the claimed messageIds were rolled back too
        # Segment retries: everything is stored, once.
        assert post(app, batch).json["stored"] == 3
        assert post(app, batch).json["duplicates"] == 3
    finally:
        admin.dispose()
        close_app(app)


def test_commit_fails_503_nothing_partial(database_url, tmp_path):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's lock at COMMIT; PostgreSQL: see the killed-backend test")
    app = make_app(
        database_url,
        SQLALCHEMY_ENGINE_OPTIONS={
            "pool_pre_ping": True,
            "connect_args": {"timeout": 0.2},
        },
    )
    with app.app_context():
        engine = app.extensions["test_db"].engine
    path = database_url.removeprefix("sqlite:///")
    reader: list[sqlite3.Connection] = []

    def hold_shared_lock(
        conn: t.Any, cursor: t.Any, statement: str, *args: t.Any
    ) -> None:
        # A reader holds SHARED from here on: the writer cannot COMMIT.
        if "INSERT INTO refiner_segment_event" in statement and not reader:
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN")
            other.execute("SELECT count(*) FROM refiner_segment_workspace").fetchall()
            reader.append(other)

    batch = [identify("c-1"), track("c-2")]
    try:
        sa.event.listen(engine, "before_cursor_execute", hold_shared_lock)
        response = post(app, batch)
        sa.event.remove(engine, "before_cursor_execute", hold_shared_lock)
        assert reader
        assert response.status_code == 503
        assert response.is_json and response.json["error"] == "unavailable"
        reader[0].rollback()
        reader[0].close()
        assert nothing_stored(app)
        assert post(app, batch).json["stored"] == 2
    finally:
        close_app(app)


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_no_database_answers_503(tmp_path: Path, kind: str) -> None:
    url = (
        "postgresql+psycopg://postgres@127.0.0.1:1/none"
        if kind == "postgresql"
        else f"sqlite:///{tmp_path / 'missing-dir' / 'app.db'}"
    )
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="s",
        SQLALCHEMY_DATABASE_URI=url,
        REFINER_SEGMENT_INBOUND_API_KEY=API_KEY,
        REFINER_SEGMENT_REDIS_URL="redis://127.0.0.1:1/0",
    )
    db = SQLAlchemy(app)
    RefinerSegment(app, db=db)
    try:
        response = post(app, track())
        assert response.status_code == 503
        assert response.is_json
        # A stored (hashed) key needs the database to be checked at all.
        response = post(app, track(), {"Authorization": "Bearer some-stored-key"})
        assert response.status_code == 503
    finally:
        with app.app_context():
            db.engine.dispose()
