"""Reading the outbox for people: counts per status, the delivery log, surveys seen.

Each query runs on its own connection, never on the host's ``db.session``.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa

from ..tables import outbound as models

if t.TYPE_CHECKING:
    from ..state import State

#: Columns of the delivery log (not the payload).
LOG_COLUMNS = (
    *("id", "status", "response_id", "survey_id", "user_id", "attempts", "reason"),
    *("last_status_code", "created_at", "updated_at", "sent_at", "next_attempt_at"),
)


def _table(state: State) -> sa.Table:
    return t.cast(sa.Table, state.tables.outbound.Delivery.__table__)


def counts(state: State, workspace_id: str | None = None) -> dict[str, int]:
    """Deliveries per status (every status listed, zeros included)."""
    table = _table(state)
    query = sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
    if workspace_id is not None:
        query = query.where(table.c.workspace_id == workspace_id)
    with state.db.engine.connect() as conn:
        found = {status: int(n) for status, n in conn.execute(query)}
    return {status: found.get(status, 0) for status in models.STATUSES}


def page(
    state: State, workspace_id: str, status: str | None, number: int, per_page: int
) -> list[sa.Row[t.Any]]:
    """Page ``number`` (from 1) of a workspace's deliveries, newest first."""
    table = _table(state)
    query = sa.select(*(table.c[name] for name in LOG_COLUMNS)).where(
        table.c.workspace_id == workspace_id
    )
    if status:
        query = query.where(table.c.status == status)
    query = (
        query.order_by(table.c.id.desc())
        .limit(per_page)
        .offset((max(number, 1) - 1) * per_page)
    )
    with state.db.engine.connect() as conn:
        return list(conn.execute(query))


def seen_surveys(state: State, workspace_id: str, scan: int, limit: int) -> list[str]:
    """Survey ids of the latest ``scan`` deliveries, most recent first."""
    table = _table(state)
    recent = (
        sa.select(table.c.id, table.c.survey_id)
        .where(table.c.workspace_id == workspace_id)
        .order_by(table.c.id.desc())
        .limit(scan)
        .subquery()
    )
    query = (
        sa.select(recent.c.survey_id)
        .where(recent.c.survey_id.is_not(None))
        .group_by(recent.c.survey_id)
        .order_by(sa.func.max(recent.c.id).desc())
        .limit(limit)
    )
    with state.db.engine.connect() as conn:
        return [str(s) for s in conn.execute(query).scalars()]


def oldest_pending(state: State, workspace_id: str | None = None) -> dt.datetime | None:
    """When the oldest pending delivery was created (UTC), or ``None``."""
    table = _table(state)
    query = sa.select(sa.func.min(table.c.created_at)).where(
        table.c.status == models.PENDING
    )
    if workspace_id is not None:
        query = query.where(table.c.workspace_id == workspace_id)
    with state.db.engine.connect() as conn:
        found = conn.execute(query).scalar()
    if found is None:
        return None
    if isinstance(found, str):  # SQLite's MIN() of a DATETIME column is text
        found = dt.datetime.fromisoformat(found)
    return found if found.tzinfo else found.replace(tzinfo=dt.timezone.utc)
