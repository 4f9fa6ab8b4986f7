"""The request path's round trips to PostgreSQL, counted in libpq's protocol
trace: recording inside the host's transaction adds one round trip (the
SAVEPOINT, the statement and the RELEASE are pipelined), and an error in it
still leaves the host's transaction usable."""

from __future__ import annotations

import contextlib
import tempfile
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.outbound import fallback
from psycopg.pq import Trace
from sqlalchemy import orm

from . import hostapp
from .conftest import completion
from .helpers import deliveries
from .helpers import postgres_only

#: Round trips to PostgreSQL (psycopg's protocol trace).
pytestmark = postgres_only


@pytest.fixture
def pg(app: Flask) -> t.Iterator[tuple[Flask, t.Any, t.Any]]:
    db = app.extensions["test_db"]

    class TripNote(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "trip_note"
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)

    with app.app_context():
        TripNote.__table__.create(db.engine, checkfirst=True)
    yield app, db, TripNote
    with app.app_context():
        TripNote.__table__.drop(db.engine)


def _sent_round_trips(trace: t.IO[bytes]) -> int:
    """The round trips in a libpq trace: each client message that ends one
    (``Sync`` in the extended protocol, ``Query`` in the simple one)."""
    trace.seek(0)
    lines = trace.read().decode().splitlines()
    sent = [line.split("\t") for line in lines if line.startswith("F\t")]
    return sum(1 for f in sent if f[2].strip() in ("Sync", "Query"))


@contextlib.contextmanager
def round_trips(db: t.Any) -> t.Iterator[list[int]]:
    """Count the client's round trips on ``db.session``'s connection: each
    ends with a ``Sync`` (extended protocol) or is a ``Query`` (simple)."""
    dbapi = db.session.connection().connection.dbapi_connection
    counted: list[int] = []
    with tempfile.TemporaryFile() as trace:
        dbapi.pgconn.trace(trace.fileno())
        dbapi.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
        try:
            yield counted
        finally:
            dbapi.pgconn.untrace()
        counted.append(_sent_round_trips(trace))


def test_recording_inside_the_transaction_is_one_round_trip(pg):
    app, db, note = pg
    with app.test_request_context():
        db.session.add(note())
        db.session.flush()  # the host's transaction has begun
        with round_trips(db) as counted:
            hostapp.survey_completed.send(app, **completion(1))
        db.session.add(note())
        db.session.commit()
    assert counted == [1]
    assert [d.status for d in deliveries(app)] == ["pending"]
    with app.app_context(), db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(note)).scalar() == 2


def test_an_error_in_the_pipeline_keeps_the_host_s_transaction(pg, redis_conn):
    app, db, note = pg
    state = app.extensions["refiner_segment"]
    table = state.tables.outbound.SurveyResponse.__table__
    with app.app_context():
        table.drop(db.engine)  # our statement fails; the host's do not
    try:
        with app.test_request_context():
            db.session.add(note())
            db.session.flush()
            with round_trips(db) as counted:
                hostapp.survey_completed.send(app, **completion(1))
            db.session.add(note())
            db.session.commit()  # a poisoned transaction would raise here
    finally:
        with app.app_context():
            table.create(db.engine)
    assert counted[0] <= 3  # the pipeline, the SAVEPOINT's rollback and release
    assert deliveries(app) == []
    assert fallback.length(redis_conn) == 1  # not lost: it waits in Redis
    with app.app_context(), db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(note)).scalar() == 2


@contextlib.contextmanager
def engine_round_trips(engine: sa.Engine) -> t.Iterator[list[int]]:
    """Count the round trips of every connection ``engine`` hands out in the
    block, as :func:`round_trips` does."""
    counted: list[int] = []
    with tempfile.TemporaryFile() as trace:

        def checkout(dbapi: t.Any, *args: t.Any) -> None:
            dbapi.pgconn.trace(trace.fileno())
            dbapi.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)

        def checkin(dbapi: t.Any, *args: t.Any) -> None:
            if dbapi is not None:
                dbapi.pgconn.untrace()

        sa.event.listen(engine, "checkout", checkout)
        sa.event.listen(engine, "checkin", checkin)
        try:
            yield counted
        finally:
            sa.event.remove(engine, "checkout", checkout)
            sa.event.remove(engine, "checkin", checkin)
        counted.append(_sent_round_trips(trace))


def test_reading_settings_is_one_round_trip(app):
    """A request whose workspace's settings are not cached reads them with one
    statement, without ``BEGIN`` and ``ROLLBACK`` around it."""
    from flask_refiner_segment.outbound import settings

    state = app.extensions["refiner_segment"]
    with app.app_context():
        settings.load(state, "default")  # the pool has a connection
        with engine_round_trips(state.db.engine) as one:
            settings.load(state, "default", fresh=True)
        with engine_round_trips(state.db.engine) as many:
            settings.load_many(state, ["default", "other"])
    assert one == [1]
    assert many == [1]
