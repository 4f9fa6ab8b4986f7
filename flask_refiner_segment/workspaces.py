"""The stored row of each workspace, shared by both directions: the outbound
settings and the inbound key live on it.

Every function runs in a transaction of the extension's own on ``db.engine``,
never on the host's ``db.session``.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

from .state import autocommit
from .tables.base import utcnow

if t.TYPE_CHECKING:
    from .state import State


def _table(state: State) -> sa.Table:
    return t.cast(sa.Table, state.tables.outbound.Workspace.__table__)


def stored(state: State, workspace_id: str) -> sa.Row[t.Any] | None:
    """The stored row of a workspace (columns, not an ORM object), or ``None``."""
    table = _table(state)
    # Autocommit: one round trip (no BEGIN ... ROLLBACK around a read).
    with autocommit(state.db.engine).connect() as conn:
        return conn.execute(
            sa.select(table).where(table.c.workspace_id == workspace_id)
        ).first()


def stored_many(
    state: State, workspace_ids: t.Iterable[str]
) -> dict[str, sa.Row[t.Any]]:
    """The stored rows of several workspaces, by workspace id (one query)."""
    ids = sorted(set(workspace_ids))
    if not ids:
        return {}
    table = _table(state)
    with autocommit(state.db.engine).connect() as conn:
        rows = conn.execute(sa.select(table).where(table.c.workspace_id.in_(ids)))
        return {str(row.workspace_id): row for row in rows}


def stored_all(state: State, limit: int) -> dict[str, sa.Row[t.Any]] | None:
    """Every stored row, by workspace id (one query), or ``None`` when there
    are more than ``limit``."""
    table = _table(state)
    with autocommit(state.db.engine).connect() as conn:
        rows = conn.execute(sa.select(table).limit(limit + 1)).all()
    if len(rows) > limit:
        return None
    return {str(row.workspace_id): row for row in rows}


def update(state: State, workspace_id: str, values: dict[str, t.Any]) -> None:
    """Store ``values`` (column: value) for a workspace, creating its row when
    missing, in transactions of the extension's own."""
    table = _table(state)
    values = {**values, "updated_at": utcnow()}
    change = table.update().where(table.c.workspace_id == workspace_id).values(values)
    with state.db.engine.begin() as conn:
        if conn.execute(change).rowcount:
            return
    row = {"workspace_id": workspace_id, "enabled": True, "region": "us", **values}
    try:
        with state.db.engine.begin() as conn:
            conn.execute(table.insert().values(row))
    except sa.exc.IntegrityError:  # created meanwhile by another request
        with state.db.engine.begin() as conn:
            conn.execute(change)
