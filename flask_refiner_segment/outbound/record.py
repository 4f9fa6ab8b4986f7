"""Recording completions in the outbox, the request path's side: one
``INSERT`` per completion, durable on its own, and the rows of completions that
are not sent. Nothing here talks to Redis or Segment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import typing as t

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..tables import outbound as models
from ..tables.base import utcnow

if t.TYPE_CHECKING:
    from ..state import State


def _table(state: State) -> sa.Table:
    return t.cast(sa.Table, state.tables.outbound.Delivery.__table__)


def insert_pending(state: State, row: dict[str, t.Any]) -> bool:
    """Record a completion as a pending delivery; ``False`` for a duplicate.

    ``row`` holds ``workspace_id``, ``response_id``, ``survey_id``, ``user_id``,
    ``payload`` (canonical JSON) and ``nps_score``. One ``INSERT .. ON CONFLICT
    DO NOTHING`` in autocommit mode: a single statement is atomic and durable on
    its own; autocommit spares the ``BEGIN`` and ``COMMIT`` round trips, and the
    statement is built once per process.

    :raise sqlalchemy.exc.SQLAlchemyError: the database refused.
    """
    now = utcnow()
    values = {
        **row,
        "content_hash": hashlib.sha256(row["payload"].encode()).hexdigest(),
        "status": models.PENDING,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "next_attempt_at": now,
        "retry_until": now + dt.timedelta(seconds=state.config.retry_window),
    }
    engine, stmt = state.local("insert_pending", lambda: _insert_statement(state))
    try:
        with engine.connect() as conn:
            result = conn.execute(stmt, values)
            if result.returns_rows:  # ON CONFLICT .. RETURNING: a row when inserted
                return result.first() is not None
            return bool(result.rowcount)
    except IntegrityError:  # dialects without ON CONFLICT
        return False


def _insert_statement(state: State) -> tuple[sa.Engine, t.Any]:
    table = _table(state)
    engine = state.db.engine.execution_options(isolation_level="AUTOCOMMIT")
    # The unique constraint on (workspace, response, content) was replaced by
    # an index (schema of 6ede0a3), so ON CONFLICT has nothing to match: plain
    # INSERT until the record side's deduplication (refiner_segment_response)
    # lands. A repeated signal is recorded again meanwhile.
    stmt: t.Any = table.insert()
    if engine.dialect.name in ("postgresql", "sqlite"):
        stmt = stmt.returning(table.c.id)
    return engine, stmt


def insert_unsent(
    state: State, row: dict[str, t.Any], status: str, reason: str
) -> None:
    """Record a completion that is not sent (skipped or failed), with the reason.

    :raise sqlalchemy.exc.SQLAlchemyError: the database refused.
    """
    now = utcnow()
    with state.db.engine.begin() as conn:
        conn.execute(
            _table(state)
            .insert()
            .values(
                **row,
                status=status,
                reason=reason,
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )
