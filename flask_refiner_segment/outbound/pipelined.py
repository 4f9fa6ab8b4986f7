"""One statement in a SAVEPOINT of the host's transaction, in one round trip.

Inside the host's transaction a completion is recorded in a SAVEPOINT, so that
an error leaves the host's transaction usable. Through SQLAlchemy that is four
round trips on PostgreSQL (the transaction's deferred ``BEGIN``, ``SAVEPOINT``,
the statement, ``RELEASE``). With psycopg 3 they are sent together in its
pipeline mode: one round trip. On an error the SAVEPOINT is rolled back and
the error raised as SQLAlchemy's :class:`~sqlalchemy.exc.DBAPIError`, as
SQLAlchemy would have.

The statement is compiled once; statements whose parameters need SQLAlchemy's
bind processing are not eligible (:func:`compile_for` returns ``None``).
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

_SAVEPOINT = "refiner_segment_record"


class Compiled(t.NamedTuple):
    """A statement compiled for the psycopg dialect."""

    compiled: sa.sql.compiler.Compiled
    sql: str


def compile_for(engine: sa.Engine, statement: t.Any) -> Compiled | None:
    """``statement`` compiled for pipelining, or ``None`` when ``engine`` is
    not psycopg 3 with pipeline support or the statement's parameters need
    processing by SQLAlchemy."""
    if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg":
        return None
    import psycopg

    if not psycopg.Pipeline.is_supported():
        return None
    compiled = statement.compile(dialect=engine.dialect)
    if getattr(compiled, "_bind_processors", None):
        return None
    return Compiled(compiled, compiled.string)


def pipeline_of(connection: sa.Connection) -> t.Any:
    """The psycopg connection under ``connection`` when it can pipeline now
    (in a transaction, not already pipelining), else ``None``."""
    dbapi = connection.connection.dbapi_connection
    if dbapi is None or not hasattr(dbapi, "pipeline"):
        return None
    if getattr(dbapi, "_pipeline", None) is not None or dbapi.autocommit:
        return None
    return dbapi


def run(stmt: Compiled, dbapi: t.Any, values: dict[str, t.Any]) -> t.Any:
    """Run ``stmt`` with ``values`` in a SAVEPOINT on ``dbapi`` (a psycopg
    connection in a transaction), one round trip; returns its first row.

    :raise sqlalchemy.exc.DBAPIError: the database refused; the SAVEPOINT was
        rolled back, the transaction goes on.
    """
    import psycopg

    params = stmt.compiled.construct_params(values)
    try:
        with dbapi.pipeline():
            dbapi.execute(f"SAVEPOINT {_SAVEPOINT}")
            cursor = dbapi.execute(stmt.sql, params)
            dbapi.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        return cursor.fetchone()
    except psycopg.Error as exc:
        try:
            dbapi.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            dbapi.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        except psycopg.Error:  # the transaction itself failed: its commit says so
            pass
        raise sa.exc.DBAPIError.instance(
            stmt.sql,
            params,
            exc,
            psycopg.Error,
            hide_parameters=True,
            dialect=None,
        ) from exc
