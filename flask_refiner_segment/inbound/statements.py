"""The SQL statements of the inbound store: upserts for PostgreSQL and SQLite.

Both speak ``INSERT .. ON CONFLICT``. The statements of plain calls are built
once per table and dialect: building them costs more than executing them, and
SQLAlchemy's compiled cache then always hits. The ``alias`` statements carry
the two ids, so they are built per message.
"""

from __future__ import annotations

import functools
import typing as t

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite

#: What a newer value of a trait replaces.
TRAIT_VALUE_COLUMNS = (
    "value",
    "value_type",
    "value_text",
    "value_num",
    "value_at",
    "updated_at",
)


def insert_for(table: sa.Table, pg: bool) -> t.Any:
    """The dialect's ``INSERT`` (the one with ``on_conflict_*``)."""
    return postgresql.insert(table) if pg else sqlite.insert(table)


def _widened(table: sa.Table, stmt: t.Any, pg: bool) -> dict[str, t.Any]:
    """What a span upsert sets: the earlier first and the later last seen time."""
    least, greatest = (
        (sa.func.least, sa.func.greatest) if pg else (sa.func.min, sa.func.max)
    )
    return {
        "first_seen_at": least(table.c.first_seen_at, stmt.excluded.first_seen_at),
        "last_seen_at": greatest(table.c.last_seen_at, stmt.excluded.last_seen_at),
    }


@functools.lru_cache(maxsize=128)
def claim_statement(table: sa.Table, pg: bool) -> t.Any:
    """Insert seen message ids; return those that were new."""
    return (
        insert_for(table, pg)
        .on_conflict_do_nothing(index_elements=["workspace_id", "message_id"])
        .returning(table.c.message_id)
    )


@functools.lru_cache(maxsize=128)
def seen_statement(table: sa.Table, keys: tuple[str, ...], pg: bool) -> t.Any:
    """Upsert first/last seen spans keyed by ``workspace_id`` and ``keys``."""
    stmt = insert_for(table, pg)
    set_ = _widened(table, stmt, pg)
    if "updated_at" in table.c:
        set_["updated_at"] = stmt.excluded.updated_at
    return stmt.on_conflict_do_update(index_elements=["workspace_id", *keys], set_=set_)


@functools.lru_cache(maxsize=128)
def traits_statement(table: sa.Table, owner: str, pg: bool) -> t.Any:
    """Upsert traits of ``owner`` ids; an older value never replaces a newer."""
    stmt = insert_for(table, pg)
    return stmt.on_conflict_do_update(
        index_elements=["workspace_id", owner, "key"],
        set_={c: stmt.excluded[c] for c in TRAIT_VALUE_COLUMNS},
        # Equal timestamps: the later delivery wins.
        where=table.c.value_at <= stmt.excluded.value_at,
    )


def _as_user(user_id: str) -> t.Any:
    return sa.literal(user_id, sa.String()).label("user_id")


def alias_traits_statement(
    table: sa.Table, workspace_id: str, previous_id: str, user_id: str, pg: bool
) -> t.Any:
    """Copy the user traits of ``previous_id`` to ``user_id``; per key the newer
    value stays (on equal timestamps, the one ``user_id`` has)."""
    columns = list(TRAIT_VALUE_COLUMNS)
    source = sa.select(
        table.c.workspace_id,
        _as_user(user_id),
        table.c.key,
        *(table.c[c] for c in columns),
    ).where(table.c.workspace_id == workspace_id, table.c.user_id == previous_id)
    stmt = insert_for(table, pg).from_select(
        ["workspace_id", "user_id", "key", *columns], source
    )
    return stmt.on_conflict_do_update(
        index_elements=["workspace_id", "user_id", "key"],
        set_={c: stmt.excluded[c] for c in columns},
        where=table.c.value_at < stmt.excluded.value_at,
    )


def move_spans_statement(
    table: sa.Table,
    keys: tuple[str, ...],
    workspace_id: str,
    previous_id: str,
    user_id: str,
    pg: bool,
) -> t.Any:
    """Copy the seen spans of ``previous_id`` to ``user_id``, widening the spans
    ``user_id`` already has."""
    names = ["workspace_id", *keys, "first_seen_at", "last_seen_at"]
    selected = [_as_user(user_id) if n == "user_id" else table.c[n] for n in names]
    source = sa.select(*selected).where(
        table.c.workspace_id == workspace_id, table.c.user_id == previous_id
    )
    stmt = insert_for(table, pg).from_select(names, source)
    return stmt.on_conflict_do_update(
        index_elements=["workspace_id", *keys], set_=_widened(table, stmt, pg)
    )
