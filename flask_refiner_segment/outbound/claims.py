"""Claims: the due deliveries of one or many workspaces leased to one worker,
under a claim token that fences every later change of their state
(:mod:`.outbox`, :mod:`.fence`)."""

from __future__ import annotations

import datetime as dt
import typing as t
import uuid

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..tables import outbound as models
from ..tables.base import utcnow
from .outbox import Claimed
from .outbox import bookkeeping
from .outbox import delivery_table

if t.TYPE_CHECKING:
    from ..state import State


def claim(
    state: State,
    workspace_id: str,
    limit: int,
    due_by: dt.datetime | None = None,
    *,
    status: str = models.PENDING,
) -> list[Claimed]:
    """Lease up to ``limit`` pending deliveries due by ``due_by`` (default now);
    with ``status="backfill"`` a backfill's deliveries (its own jobs only)."""
    return claim_many(state, {workspace_id: limit}, due_by, status=status).get(
        workspace_id, []
    )


def claim_many(
    state: State,
    limits: t.Mapping[str, int],
    due_by: dt.datetime | None = None,
    *,
    status: str = models.PENDING,
) -> dict[str, list[Claimed]]:
    """Lease the due deliveries of several workspaces in one statement: up to
    ``limits[workspace]`` each, the oldest first, all under one claim token.
    Returns each workspace's claimed rows in id order (none: left out).

    A workspace with a pending delivery not yet due is held back by a
    backoff (:func:`.outbox.hold_back`): none of its deliveries is claimed,
    not even one recorded since, so Segment gets one probe per backoff
    however many completions arrive meanwhile (backfills have their own).

    Safe with several workers: on PostgreSQL each workspace's rows are locked
    by a ``LATERAL .. LIMIT .. FOR UPDATE SKIP LOCKED`` subquery (rows locked
    by a concurrent claim are skipped), and the ``UPDATE`` re-checks
    ``status``; on SQLite, whose one writer claims alone, a ``UNION ALL`` of
    each workspace's ``LIMIT`` chooses them. The rows come back from
    ``UPDATE .. RETURNING``.
    """
    limits = {ws: n for ws, n in limits.items() if n > 0}
    if not limits:
        return {}
    table = delivery_table(state)
    now = utcnow()
    due_by = now if due_by is None else min(due_by, now)
    token = uuid.uuid4().hex
    due = sa.and_(table.c.status == status, table.c.next_attempt_at <= due_by)
    held = now if status == models.PENDING else None
    chosen: sa.ColumnElement[bool]
    with bookkeeping(state) as conn:
        if conn.dialect.name == "postgresql":
            ids = list(conn.execute(_locked_due(table, due, limits, held)).scalars())
            if not ids:
                return {}
            chosen = table.c.id.in_(ids)
        else:
            chosen = _each_due(table, due, limits, held)
        rows = conn.execute(
            table.update()
            .where(chosen, table.c.status == status)
            .values(
                status=models.SENDING,
                claim_token=token,
                lease_expires_at=now + dt.timedelta(seconds=state.config.lease_seconds),
                updated_at=now,
            )
            .returning(
                table.c.id,
                table.c.workspace_id,
                table.c.response_id,
                table.c.payload,
                table.c.messages,
                table.c.attempts,
                table.c.retry_until,
                table.c.claim_token,
            )
        ).all()
    claimed: dict[str, list[Claimed]] = {}
    for row in sorted(rows, key=lambda row: int(row.id)):
        claimed.setdefault(str(row.workspace_id), []).append(row)
    return claimed


def _not_held(
    table: sa.Table, workspace: sa.ColumnElement[str], now: dt.datetime | None
) -> sa.ColumnElement[bool]:
    """``workspace`` does not wait out a backoff at ``now``: none of its
    pending deliveries is due later (``now`` ``None``: no such check). One
    probe of the due index; as it reads only the workspace, not the row,
    both planners evaluate it once per workspace."""
    if now is None:
        return sa.true()
    waiting = table.alias("waiting")
    return ~(
        sa.exists()
        .where(
            waiting.c.workspace_id == workspace,
            waiting.c.status == models.PENDING,
            waiting.c.next_attempt_at > now,
        )
        .correlate_except(waiting)
    )


def _locked_due(
    table: sa.Table,
    due: sa.ColumnElement[bool],
    limits: t.Mapping[str, int],
    held: dt.datetime | None,
) -> sa.Select[tuple[int]]:
    """PostgreSQL: the ids to claim, each workspace's locked first. As ``IN
    (subquery)`` PostgreSQL may run a ``LIMIT .. FOR UPDATE SKIP LOCKED``
    subquery once per outer row, each run skipping the rows already taken (it
    would claim every due row): the ids are selected on their own."""
    # One array parameter each (cached as one statement whatever the count).
    wanted = (
        sa.func.unnest(
            sa.literal(list(limits), postgresql.ARRAY(sa.String)),
            sa.literal(list(limits.values()), postgresql.ARRAY(sa.Integer)),
        )
        .table_valued("ws", "n")
        .render_derived(name="wanted")
    )
    own = (
        sa.select(table.c.id)
        .where(
            table.c.workspace_id == wanted.c.ws,
            due,
            _not_held(table, wanted.c.ws, held),
        )
        .order_by(table.c.id)
        .limit(wanted.c.n)
        .with_for_update(skip_locked=True)
        .lateral("own")
    )
    return sa.select(own.c.id).select_from(wanted).join(own, sa.true())


def _each_due(
    table: sa.Table,
    due: sa.ColumnElement[bool],
    limits: t.Mapping[str, int],
    held: dt.datetime | None,
) -> sa.ColumnElement[bool]:
    """SQLite: the ids to claim, each workspace's by its own ``ORDER BY id
    LIMIT n`` (the claim index, whatever its backlog), joined by ``UNION ALL``
    (at most :data:`ARMS` per compound ``SELECT``)."""
    arms = []
    for ws, n in limits.items():
        own = (
            sa.select(table.c.id)
            .where(
                table.c.workspace_id == ws,
                due,
                _not_held(table, sa.literal(ws), held),
            )
            .order_by(table.c.id)
            .limit(n)
            .subquery()
        )
        arms.append(sa.select(own.c.id))
    return sa.or_(
        *(
            table.c.id.in_(sa.union_all(*arms[i : i + ARMS]))
            for i in range(0, len(arms), ARMS)
        )
    )


#: SQLite allows 500 terms in a compound ``SELECT``.
ARMS = 100
