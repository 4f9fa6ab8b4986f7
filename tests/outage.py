"""A database that refuses, for real (no tests here, so pytest does not collect it).

SQLite: another connection holds an ``EXCLUSIVE`` lock, so every read and write
of the app fails after its busy timeout (make it short with
:data:`SQLITE_OPTIONS`). PostgreSQL: the database stops allowing connections
and its backends are terminated, as during a restart or a failover.
"""

from __future__ import annotations

import contextlib
import sqlite3
import typing as t

import sqlalchemy as sa

from .conftest import POSTGRES_URL

#: Engine options of a SQLite app whose statements give up quickly on a lock.
SQLITE_OPTIONS = {"pool_pre_ping": True, "connect_args": {"timeout": 0.05}}


def engine_options(database_url: str) -> dict[str, t.Any]:
    """``SQLALCHEMY_ENGINE_OPTIONS`` for an app that lives through outages."""
    if database_url.startswith("sqlite"):
        return SQLITE_OPTIONS
    return {"pool_pre_ping": True}


@contextlib.contextmanager
def database_outage(database_url: str) -> t.Iterator[None]:
    """The app's database refuses every statement inside the block."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        locker = sqlite3.connect(str(url.database), isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        return
    name = url.database
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
        yield
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
