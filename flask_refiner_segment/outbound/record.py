"""Recording completions in the outbox, the request path's side.

A completion is recorded by upserting its response's row
(``refiner_segment_response``: the latest recorded content) and inserting a
pending delivery only when the content differs from that latest content, so a
response edited A → B → A is delivered three times and the same content
signalled twice once. On PostgreSQL that is one statement (a data-modifying
CTE); on SQLite the upsert and the insert run in one transaction, which SQLite
serializes. Nothing here talks to Redis or Segment.

The payload of an edit's delivery (every delivery of a response but its first)
carries ``"recorded_at"``: the messageIds are derived from the stored payload,
so an edit reverted to earlier answers is new messages at Segment, while the
retries of one delivery repeat its own.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import typing as t

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from ..core.completion import canonical_json
from ..tables import outbound as models
from ..tables.base import utcnow
from . import pipelined

if t.TYPE_CHECKING:
    from ..state import State

#: Columns of the response row, bound by name.
_RESPONSE = (
    "workspace_id",
    "response_id",
    "user_id",
    "survey_id",
    "content_hash",
    "answers",
    "nps_score",
    "created_at",
    "updated_at",
)
#: Columns of the delivery row and their parameters (shared with the response).
_DELIVERY = {
    "workspace_id": "workspace_id",
    "response_id": "response_id",
    "survey_id": "survey_id",
    "user_id": "user_id",
    "content_hash": "content_hash",
    "payload": "payload",  # or "payload_edit", see _build
    "status": "status",
    "nps_score": "nps_score",
    "attempts": "attempts",
    "created_at": "created_at",
    "updated_at": "created_at",
    "next_attempt_at": "next_attempt_at",
    "retry_until": "retry_until",
}
#: The ``not_after`` of a completion recorded as it arrives: always the latest.
_NO_LIMIT = dt.datetime(9999, 1, 1)


class _Statements(t.NamedTuple):
    engine: sa.Engine
    dialect: str
    responses: sa.Table
    #: PostgreSQL: the CTE doing both; SQLite: the upsert of the response.
    upsert: t.Any
    #: The insert of the delivery (SQLite and other dialects).
    insert: t.Any
    #: PostgreSQL on psycopg 3: the CTE for one round trip in a SAVEPOINT.
    pipelined: pipelined.Compiled | None = None


def _table(state: State) -> sa.Table:
    return t.cast(sa.Table, state.tables.outbound.Delivery.__table__)


def _responses(state: State) -> sa.Table:
    return t.cast(sa.Table, state.tables.outbound.SurveyResponse.__table__)


def answers_json(payload: str) -> str | None:
    """The canonical JSON of a completion payload's answers (``None`` if absent)."""
    try:
        answers = json.loads(payload)["response"]["answers"]
    except (ValueError, TypeError, KeyError):
        return None
    return canonical_json(answers)


def insert_pending(
    state: State,
    row: dict[str, t.Any],
    *,
    connection: sa.Connection | None = None,
) -> bool:
    """Record a completion; ``True`` when a pending delivery was inserted.

    ``row`` holds ``workspace_id``, ``response_id``, ``survey_id``, ``user_id``,
    ``payload`` (canonical JSON of the normalized completion), ``nps_score``
    and optionally ``answers`` (else read from ``payload``), ``status``
    (:data:`~..tables.outbound.BACKFILL` for a backfill; else pending) and
    ``received_at`` (ISO-8601 UTC, set for completions that waited in the
    Redis fallback: one older than the response's latest recorded content is
    superseded and not delivered). ``False``: the content equals the latest.

    With ``connection`` (the host's, inside its transaction) the statements
    run in a SAVEPOINT on it and become durable with the host's commit (on
    PostgreSQL with psycopg 3, in one round trip: :mod:`.pipelined`);
    without, in a short transaction of their own. The statements are built
    once per process.

    :raise sqlalchemy.exc.SQLAlchemyError: the database refused.
    """
    values = _values(state, row)
    stmts: _Statements = state.local("record_statements", lambda: _build(state))
    if connection is not None:
        pipe = stmts.pipelined
        dbapi = None if pipe is None else pipelined.pipeline_of(connection)
        if pipe is not None and dbapi is not None:
            return pipelined.run(pipe, dbapi, values) is not None
        with connection.begin_nested():
            return _run(stmts, connection, values)
    if stmts.dialect == "postgresql":  # one statement: atomic in autocommit
        with stmts.engine.connect() as conn:
            return _run(stmts, conn, values)
    with stmts.engine.begin() as conn:
        return _run(stmts, conn, values)


def _values(state: State, row: dict[str, t.Any]) -> dict[str, t.Any]:
    now = utcnow()
    received = row.get("received_at")
    recorded_at = dt.datetime.fromisoformat(received) if received else now
    stamp = recorded_at.isoformat()
    answers = row["answers"] if "answers" in row else answers_json(row["payload"])
    return {
        "workspace_id": row["workspace_id"],
        "response_id": row["response_id"],
        "survey_id": row.get("survey_id"),
        "user_id": row.get("user_id"),
        "payload": row["payload"],
        "payload_edit": f'{row["payload"][:-1]},"recorded_at":"{stamp}"}}',
        "nps_score": row.get("nps_score"),
        "answers": answers,
        "content_hash": hashlib.sha256(row["payload"].encode()).hexdigest(),
        "status": row.get("status", models.PENDING),
        "attempts": 0,
        "created_at": now,
        "updated_at": recorded_at,
        "next_attempt_at": now,
        "retry_until": now + dt.timedelta(seconds=state.config.retry_window),
        "not_after": recorded_at if received else _NO_LIMIT,
    }


def _run(stmts: _Statements, conn: sa.Connection, values: dict[str, t.Any]) -> bool:
    if stmts.dialect == "postgresql":
        return conn.execute(stmts.upsert, values).first() is not None
    if stmts.dialect == "sqlite":
        changed = conn.execute(stmts.upsert, values).first()
        if changed is None:
            return False
        inserted = bool(changed.inserted)
    else:
        found = _generic_upsert(stmts, conn, values)
        if found is None:
            return False
        inserted = found
    payload = values["payload"] if inserted else values["payload_edit"]
    conn.execute(stmts.insert, {**values, "payload": payload})
    return True


def _build(state: State) -> _Statements:
    responses, deliveries = _responses(state), _table(state)
    engine: sa.Engine = state.db.engine.execution_options(isolation_level="AUTOCOMMIT")
    dialect = engine.dialect.name
    if dialect == "sqlite":
        # Two statements: a transaction of their own, not autocommit.
        engine = state.db.engine
    params: list[t.Any] = [
        sa.bindparam(param, type_=deliveries.c[name].type)
        for name, param in _DELIVERY.items()
    ]
    insert = deliveries.insert().values(dict(zip(_DELIVERY, params, strict=True)))
    if dialect not in ("postgresql", "sqlite"):
        return _Statements(engine, dialect, responses, None, insert)
    upsert_of = postgresql.insert if dialect == "postgresql" else sqlite.insert
    upsert: t.Any = upsert_of(responses).values(
        {name: sa.bindparam(name, type_=responses.c[name].type) for name in _RESPONSE}
    )
    excluded = upsert.excluded
    upsert = upsert.on_conflict_do_update(
        index_elements=[responses.c.workspace_id, responses.c.response_id],
        set_={
            name: excluded[name]
            for name in _RESPONSE
            if name not in ("workspace_id", "response_id", "created_at")
        },
        # Only a change of content (the row lock makes concurrent signals of
        # one response see each other's content), never back to older content
        # that waited in the Redis fallback.
        where=sa.and_(
            responses.c.content_hash != excluded.content_hash,
            responses.c.updated_at <= sa.bindparam("not_after", type_=sa.DateTime()),
        ),
    ).returning(
        # The row was inserted, not updated: the response's first delivery.
        (
            responses.c.created_at == sa.bindparam("created_at", type_=sa.DateTime())
        ).label("inserted")
    )
    if dialect == "sqlite":
        return _Statements(engine, dialect, responses, upsert, insert)
    changed = upsert.cte("changed")
    params[list(_DELIVERY).index("payload")] = sa.case(
        (changed.c.inserted, sa.bindparam("payload", type_=sa.Text())),
        else_=sa.bindparam("payload_edit", type_=sa.Text()),
    )
    cte = (
        deliveries.insert()
        .from_select(
            list(_DELIVERY),
            sa.select(*params).select_from(changed),
        )
        .add_cte(changed)
        .returning(deliveries.c.id)
    )
    pipe = pipelined.compile_for(engine, cte)
    return _Statements(engine, dialect, responses, cte, None, pipe)


def _generic_upsert(
    stmts: _Statements, conn: sa.Connection, values: dict[str, t.Any]
) -> bool | None:
    """Other dialects (untested): update if changed, else insert if new;
    ``True``: inserted, ``False``: updated, ``None``: unchanged."""
    responses = stmts.responses
    c = responses.c
    key = (c.workspace_id == values["workspace_id"]) & (
        c.response_id == values["response_id"]
    )
    updated = conn.execute(
        responses.update()
        .where(key, c.content_hash != values["content_hash"])
        .where(c.updated_at <= values["not_after"])
        .values({n: values[n] for n in _RESPONSE if n not in ("created_at",)})
    )
    if updated.rowcount:
        return False
    try:
        with conn.begin_nested():
            conn.execute(responses.insert().values({n: values[n] for n in _RESPONSE}))
    except IntegrityError:
        return None
    return True


def would_record(state: State, row: dict[str, t.Any]) -> bool:
    """Whether :func:`insert_pending` would insert a delivery for ``row`` now
    (its content differs from the response's latest recorded content)."""
    responses = _responses(state)
    with state.db.engine.connect() as conn:
        stored = conn.execute(
            sa.select(responses.c.content_hash).where(
                responses.c.workspace_id == row["workspace_id"],
                responses.c.response_id == row["response_id"],
            )
        ).scalar()
    return stored != hashlib.sha256(row["payload"].encode()).hexdigest()


def insert_event(
    state: State,
    row: dict[str, t.Any],
    *,
    connection: sa.Connection | None = None,
) -> None:
    """Record a survey lifecycle event as a pending delivery.

    ``row`` holds ``workspace_id``, ``survey_id``, ``user_id`` and ``payload``
    (canonical JSON of the event, :func:`..core.lifecycle.normalize_event`).
    Each event is its own delivery: no response row, no deduplication here
    (its ``event_id`` makes the messageId, which Segment deduplicates).

    :raise sqlalchemy.exc.SQLAlchemyError: the database refused.
    """
    now = utcnow()
    stmt = (
        _table(state)
        .insert()
        .values(
            workspace_id=row["workspace_id"],
            survey_id=row.get("survey_id"),
            user_id=row.get("user_id"),
            payload=row["payload"],
            content_hash=hashlib.sha256(row["payload"].encode()).hexdigest(),
            status=models.PENDING,
            attempts=0,
            created_at=now,
            updated_at=now,
            next_attempt_at=now,
            retry_until=now + dt.timedelta(seconds=state.config.retry_window),
        )
    )
    if connection is not None:
        with connection.begin_nested():
            connection.execute(stmt)
        return
    with state.db.engine.begin() as conn:
        conn.execute(stmt)


def insert_unsent(
    state: State,
    row: dict[str, t.Any],
    status: str,
    reason: str,
    *,
    connection: sa.Connection | None = None,
) -> None:
    """Record a completion that is not sent (skipped or failed), with the reason.

    :raise sqlalchemy.exc.SQLAlchemyError: the database refused.
    """
    now = utcnow()
    stmt = (
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
    if connection is not None:
        with connection.begin_nested():
            connection.execute(stmt)
        return
    with state.db.engine.begin() as conn:
        conn.execute(stmt)
