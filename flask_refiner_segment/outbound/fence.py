"""Fenced state changes of claimed deliveries, many at once.

A claimed delivery changes only while its claim holds: its ``claim_token`` is
still the one its claim set and it is still ``sending``. A late answer to a
stale claim (its lease expired, another worker took the row) changes nothing.
Nothing here opens a transaction: :mod:`.outbox` does.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

from ..tables import outbound as models
from ..tables.base import utcnow

#: A state change: claimed rows (with ``id`` and ``claim_token``) and the
#: values they take.
Change = tuple[t.Sequence[sa.Row[t.Any]], dict[str, t.Any]]


class _Now:
    def __repr__(self) -> str:
        return "NOW"


#: A value of a state change: the time of the ``UPDATE`` that applies it.
NOW: t.Any = _Now()


def fenced_update(
    conn: sa.Connection,
    table: sa.Table,
    changes: t.Sequence[Change],
    *,
    where: sa.ColumnElement[bool] | None = None,
) -> list[list[int]]:
    """Apply each change's values to its claimed rows that their claim still
    holds; returns the ids each change changed.

    Fenced: a row changes only while its ``claim_token`` is the one its claim
    set and it is still ``sending``, so a late answer to a stale claim (its
    lease expired and another worker took the row) changes nothing. Changes
    of the same columns go in one ``UPDATE`` (whatever their claims): a value
    that differs between them is a ``CASE`` on the row's id. ``where``: a
    further condition on the rows.
    """
    now = utcnow()
    changes = [
        (
            rows,
            {
                k: now if v is NOW else v
                for k, v in {"updated_at": now, **values}.items()
            },
        )
        for rows, values in changes
    ]
    by_columns: dict[tuple[str, ...], list[int]] = {}
    for n, (rows, values) in enumerate(changes):
        if rows:
            by_columns.setdefault(tuple(sorted(values)), []).append(n)
    changed: set[int] = set()
    for columns, group in by_columns.items():
        tokens: dict[str, list[int]] = {}
        for n in group:
            for row in changes[n][0]:
                tokens.setdefault(str(row.claim_token), []).append(int(row.id))
        fence = sa.or_(
            *(
                sa.and_(table.c.id.in_(ids), table.c.claim_token == token)
                for token, ids in tokens.items()
            )
        )
        values = {
            column: _value(table, column, [changes[n] for n in group])
            for column in columns
        }
        changed.update(
            conn.execute(
                table.update()
                .where(fence, table.c.status == models.SENDING)
                .where(sa.true() if where is None else where)
                .values(**values)
                .returning(table.c.id)
            ).scalars()
        )
    return [
        sorted(int(r.id) for r in rows if int(r.id) in changed) for rows, _ in changes
    ]


def _value(table: sa.Table, column: str, changes: t.Sequence[Change]) -> t.Any:
    """One column's new value for the rows of ``changes``: the value itself
    when they agree, else a ``CASE`` on the row's id."""
    first = changes[0][1][column]
    if all(_same(values[column], first) for _, values in changes[1:]):
        return first
    col = table.c[column]
    whens = {
        int(row.id): values[column]
        if isinstance(values[column], sa.ClauseElement)
        else sa.literal(values[column], col.type)
        for rows, values in changes
        for row in rows
    }
    return sa.case(whens, value=table.c.id, else_=col)


def _same(a: t.Any, b: t.Any) -> bool:
    if isinstance(a, sa.ClauseElement) or isinstance(b, sa.ClauseElement):
        return (
            isinstance(a, sa.ClauseElement)
            and isinstance(b, sa.ClauseElement)
            and a.compare(b)
        )
    return type(a) is type(b) and bool(a == b)
