"""Joining the host's transaction: the transactional outbox.

When the host sends ``survey_completed`` inside a transaction of its
``db.session`` that has written, the receiver records the completion on that
session's connection, in a SAVEPOINT, so the host's commit makes the response
and its delivery durable together and a rollback leaves nothing. The drain job
is kicked after the host's commit; pending kicks are discarded when the
transaction ends without one.

The rule: the session *has written* when it holds new, dirty or deleted
objects, or flushed or executed DML (``INSERT``/``UPDATE``/``DELETE`` through
``Session.execute``) in its current transaction. Otherwise (no session, after
the commit, a transaction that only read and may never be committed) the
receiver uses a short transaction of its own, as when the signal is sent after
the commit. DML on ``session.connection()`` directly is not seen, except on
SQLite, whose driver has begun a transaction then.
"""

from __future__ import annotations

import logging
import re
import typing as t
import weakref

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy import orm

from . import kick

if t.TYPE_CHECKING:
    from ..state import State

logger = logging.getLogger("flask_refiner_segment")

#: ``Session.info`` keys: the session wrote in its transaction; kicks to send
#: after its commit, as ``(state, workspace_id)``.
WROTE = "refiner_segment.wrote"
KICKS = "refiner_segment.kicks"

#: The session factories listened to. Not ``event.contains``: SQLAlchemy's
#: registry keys listeners by ``id(target)`` and keeps the key after the target
#: is gone, so a new factory at a freed address (an app factory building a
#: ``SQLAlchemy()`` per app, as test suites do) looked listened to and was not.
_installed: weakref.WeakSet[t.Any] = weakref.WeakSet()

_DML = re.compile(r"\s*(insert|update|delete|merge|replace|upsert)\b", re.IGNORECASE)


def install(session: t.Any) -> None:
    """Listen to the events of ``session`` (``db.session``, a scoped_session,
    or a sessionmaker); call once per session factory."""
    if session in _installed:
        return
    _installed.add(session)
    event.listen(session, "after_flush", _after_flush)
    event.listen(session, "do_orm_execute", _do_orm_execute)
    event.listen(session, "after_commit", _after_commit)
    event.listen(session, "after_transaction_end", _after_transaction_end)


def host_connection(state: State) -> sa.Connection | None:
    """The connection of the host's ``db.session`` when it is in a transaction
    that wrote, else ``None``. Never flushes the session.

    :raise sqlalchemy.exc.SQLAlchemyError: the connection could not be had.
    """
    registry = state.db.session
    if not registry.registry.has():
        return None
    session: orm.Session = registry()
    bind = {"mapper": state.tables.outbound.Delivery}
    if not (session.info.get(WROTE) or session.new or session.deleted or session.dirty):
        if not session.in_transaction() or state.db.engine.dialect.name != "sqlite":
            return None
        # SQLite's driver begins a transaction at the first DML only.
        dbapi = session.connection(bind_arguments=bind).connection.dbapi_connection
        if not getattr(dbapi, "in_transaction", False):
            return None
    conn = session.connection(bind_arguments=bind)
    if conn.dialect.name == "sqlite":
        _begin_sqlite(conn)
    return conn


def _begin_sqlite(conn: sa.Connection) -> None:
    """Begin the transaction of pysqlite's connection if it has not yet.

    The driver emits ``BEGIN`` before the first DML only; a ``SAVEPOINT``
    outside a transaction would begin one that its ``RELEASE`` commits, apart
    from the host's commit.
    """
    dbapi = conn.connection.dbapi_connection
    if dbapi is not None and not getattr(dbapi, "in_transaction", True):
        conn.exec_driver_sql("BEGIN")


def kick_after_commit(state: State, workspace_id: str) -> None:
    """Kick a drain of ``workspace_id`` once the host's session commits."""
    kicks: dict[tuple[int, str], State] = state.db.session().info.setdefault(KICKS, {})
    kicks[(id(state), workspace_id)] = state


def _after_flush(session: orm.Session, context: t.Any) -> None:
    session.info[WROTE] = True


def _do_orm_execute(execute_state: orm.ORMExecuteState) -> None:
    statement = execute_state.statement
    if (
        execute_state.is_insert
        or execute_state.is_update
        or execute_state.is_delete
        or (isinstance(statement, sa.TextClause) and _DML.match(statement.text))
    ):
        execute_state.session.info[WROTE] = True


def _after_commit(session: orm.Session) -> None:
    if session.in_nested_transaction():
        # SQLAlchemy signals the release of a SAVEPOINT as a commit too: the
        # host's transaction is still open, its rows not durable yet.
        return
    kicks: dict[tuple[int, str], State] = session.info.pop(KICKS, {})
    for (_, workspace_id), state in kicks.items():
        try:
            kick.kick(state, workspace_id, reuse=True)
        except Exception:  # never raise into the host's commit
            logger.exception("Could not kick the drain of %r.", workspace_id)


def _after_transaction_end(session: orm.Session, transaction: t.Any) -> None:
    if transaction.parent is None:
        session.info.pop(WROTE, None)
        session.info.pop(KICKS, None)  # ended without a commit: nothing to send
