"""The durable outbox, the workers' side: claims and every change of a
delivery's state after it was recorded (see :mod:`.record`).

Every function uses its own short transaction on ``db.engine``; none touches the
host's ``db.session``. Nothing here talks to Redis or Segment.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import time
import typing as t

import sqlalchemy as sa

from ..tables import outbound as models
from ..tables.base import utcnow
from .fence import NOW
from .fence import Change
from .fence import fenced_update

if t.TYPE_CHECKING:
    from ..state import State
    from .client import SendResult

logger = logging.getLogger("flask_refiner_segment")

R = t.TypeVar("R")

#: A claimed delivery: ``id``, ``response_id``, ``payload``, ``messages`` (as
#: frozen at its first attempt, or ``None``), ``attempts``, ``retry_until`` and
#: the ``claim_token`` that fences its state changes.
Claimed = sa.Row[t.Any]


def delivery_table(state: State) -> sa.Table:
    """The delivery table of ``state``'s models."""
    return t.cast(sa.Table, state.tables.outbound.Delivery.__table__)


@contextlib.contextmanager
def bookkeeping(state: State) -> t.Iterator[sa.Connection]:
    """A transaction for a worker's state change (claim, sent, retry, failed).

    On PostgreSQL its commit does not wait for the WAL flush (``SET LOCAL
    synchronous_commit = off``), so workers do not queue fsyncs in front of the
    request path's durable ``INSERT``. A server crash can lose the last few
    hundred milliseconds of such changes: a delivery then goes back to pending
    (or to its expired lease) and is sent again with the same ``messageId``s,
    which Segment deduplicates. Recording a completion stays fully durable.
    """
    with state.db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
        yield conn


def _transition(state: State, rows: t.Sequence[Claimed], **values: t.Any) -> list[int]:
    """Apply ``values`` to the claimed ``rows`` that their claim still holds;
    returns the ids that changed (see :func:`fenced_update`)."""
    return transitions(state, [(rows, values)])[0][0]


def transitions(
    state: State,
    changes: t.Sequence[Change],
    *,
    bumps: t.Sequence[tuple[str, dt.datetime]] = (),
    due_of: t.Collection[str] = (),
) -> tuple[list[list[int]], dict[str, dt.datetime]]:
    """Apply several state changes in one transaction (:func:`fenced_update`),
    then hold back the workspaces of ``bumps`` (:func:`hold_back`), then read
    when the next pending delivery of each workspace of ``due_of`` is due.

    A lost connection is retried (``DB_RETRY_DELAYS``), which the fence makes
    safe. Returns the ids each change changed, and the due times found.
    """
    if not changes and not bumps and not due_of:
        return [], {}
    table = delivery_table(state)

    def apply() -> tuple[list[list[int]], dict[str, dt.datetime]]:
        with bookkeeping(state) as conn:
            changed = fenced_update(conn, table, changes)
            for workspace_id, next_at in bumps:
                hold_back(conn, table, workspace_id, next_at)
            return changed, next_due_many(conn, table, due_of)

    return retrying(state, apply)


def hold_back(
    conn: sa.Connection, table: sa.Table, workspace_id: str, next_at: dt.datetime
) -> None:
    """The workspace's source fails: none of its pending deliveries is due
    before ``next_at`` (their attempt count is unchanged), and none recorded
    meanwhile is claimed before then (:func:`.claims.claim_many`)."""
    conn.execute(
        table.update()
        .where(
            table.c.workspace_id == workspace_id,
            table.c.status == models.PENDING,
            table.c.next_attempt_at < next_at,
        )
        .values(next_attempt_at=next_at)
    )


def next_due_many(
    conn: sa.Connection, table: sa.Table, workspace_ids: t.Collection[str]
) -> dict[str, dt.datetime]:
    """When each workspace's pending deliveries are due (those with none
    pending are left out): when the last is, as a workspace is claimed only
    once none waits (:func:`.claims.claim_many`)."""
    if not workspace_ids:
        return {}
    query = (
        sa.select(table.c.workspace_id, sa.func.max(table.c.next_attempt_at))
        .where(
            table.c.workspace_id.in_(list(workspace_ids)),
            table.c.status == models.PENDING,
        )
        .group_by(table.c.workspace_id)
    )
    return {str(ws): when for ws, when in conn.execute(query) if when is not None}


def retrying(state: State, func: t.Callable[[], R]) -> R:
    """``func()``, again after a lost connection or a locked database."""
    delays = state.config.db_retry_delays
    for attempt, delay in enumerate((*delays, None)):
        try:
            return func()
        except sa.exc.DBAPIError as exc:
            transient = exc.connection_invalidated or isinstance(
                exc, sa.exc.OperationalError
            )
            if delay is None or not transient:
                raise
            logger.warning(
                "Database error in a delivery state change (%s); retry %d in %.1f s.",
                type(exc.orig).__name__,
                attempt + 1,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _unclaimed(status: str, next_attempt_at: dt.datetime | None) -> dict[str, t.Any]:
    """The values that end a claim: the new ``status``, when the delivery is due
    next (``None``: not again), and neither claim token nor lease."""
    return {
        "status": status,
        "next_attempt_at": next_attempt_at,
        "claim_token": None,
        "lease_expires_at": None,
    }


def attempted_values(
    state: State,
    status: str,
    *,
    reason: str | None,
    status_code: int | None,
    next_attempt_at: dt.datetime | None = None,
    **values: t.Any,
) -> dict[str, t.Any]:
    """The values that record an attempt at sending claimed deliveries: count
    it, keep its outcome (``reason``, ``status_code``) and end the claim."""
    return {
        "attempts": delivery_table(state).c.attempts + 1,
        "reason": reason,
        "last_status_code": status_code,
        **_unclaimed(status, next_attempt_at),
        **values,
    }


def sent_values(state: State, status_code: int | None) -> dict[str, t.Any]:
    """Segment took the deliveries."""
    return attempted_values(
        state, models.SENT, reason=None, status_code=status_code, sent_at=NOW
    )


def failed_values(
    state: State, reason: str, status_code: int | None = None
) -> dict[str, t.Any]:
    """The deliveries failed for good."""
    return attempted_values(
        state, models.FAILED, reason=reason, status_code=status_code
    )


def released_values(reason: str | None = None) -> dict[str, t.Any]:
    """The deliveries go back unsent, due now (the write key was rejected)."""
    values = _unclaimed(models.PENDING, NOW)
    if reason is not None:
        values["reason"] = reason
    return values


def mark_sent(
    state: State, rows: t.Sequence[Claimed], status_code: int | None
) -> list[int]:
    """Segment took the claimed ``rows``; returns the ids that changed."""
    return _transition(state, rows, **sent_values(state, status_code))


def mark_failed(
    state: State,
    rows: t.Sequence[Claimed],
    reason: str,
    status_code: int | None = None,
) -> list[int]:
    """The claimed ``rows`` failed for good; returns the ids that changed."""
    return _transition(state, rows, **failed_values(state, reason, status_code))


def backoff(state: State, attempts: int, retry_after: float | None) -> float:
    """Seconds to wait after ``attempts`` failed attempts: exponential with jitter.

    ``Retry-After`` (already capped by the client) is a floor.
    """
    config = state.config
    ceiling = min(config.backoff_max, config.backoff_base * 2 ** max(0, attempts - 1))
    delay = random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret
    if retry_after is not None:
        delay = max(delay, min(retry_after, config.retry_after_max))
    return delay


def mark_retry(
    state: State,
    workspace_id: str,
    rows: t.Sequence[Claimed],
    result: SendResult,
) -> tuple[list[int], dt.datetime]:
    """Put deliveries back as pending with a backoff, or fail those out of time.

    The backoff holds for the whole workspace: Segment failing for one batch
    fails for the next, so the other due deliveries wait too (their attempt
    count is unchanged). Returns the ids that failed for good and the time of
    the next attempt.
    """
    *changes, next_at = retry_changes(state, rows, result)
    changed, _ = transitions(state, changes, bumps=[(workspace_id, next_at)])
    return changed[0], next_at


def retry_changes(
    state: State, rows: t.Sequence[Claimed], result: SendResult
) -> tuple[Change, Change, dt.datetime]:
    """A failed attempt to be retried: the changes (first, the rows out of
    their retry window fail for good; then the others go back to pending with
    a backoff) and the time of the next attempt."""
    now = utcnow()
    attempts = max(row.attempts for row in rows) + 1
    next_at = now + dt.timedelta(seconds=backoff(state, attempts, result.retry_after))
    out_of_time = [
        row
        for row in rows
        if row.retry_until is not None and row.retry_until <= next_at
    ]
    waiting = [row for row in rows if row not in out_of_time]
    failed = failed_values(
        state, f"gave up after the retry window: {result.error}", result.status_code
    )
    retry = attempted_values(
        state,
        models.PENDING,
        reason=f"{result.error} (retrying)",
        status_code=result.status_code,
        next_attempt_at=next_at,
    )
    return (out_of_time, failed), (waiting, retry), next_at


def end_claim(
    state: State, rows: t.Sequence[Claimed], status: str, **values: t.Any
) -> list[int]:
    """End claims with ``status`` (fenced; ``next_attempt_at``, ``attempted``
    to count an attempt); returns the ids that changed."""
    if values.pop("attempted", False):
        values["attempts"] = delivery_table(state).c.attempts + 1
    due = values.pop("next_attempt_at", None)
    return _transition(state, rows, **_unclaimed(status, due), **values)


def release(
    state: State, rows: t.Sequence[Claimed], reason: str | None = None
) -> list[int]:
    """Return claimed deliveries unsent (the write key was rejected)."""
    return _transition(state, rows, **released_values(reason))


def next_due(state: State, workspace_id: str) -> dt.datetime | None:
    """When a workspace's pending deliveries are due (:func:`next_due_many`)."""
    with state.db.engine.connect() as conn:
        found = next_due_many(conn, delivery_table(state), [workspace_id])
    return found.get(workspace_id)


def release_stale(
    state: State, *, force: bool = False, due_only: bool = False
) -> tuple[int, list[str]]:
    """Put deliveries claimed by a worker that died back to pending.

    A claim whose lease expired (with ``force``, every claim) is released.
    Returns how many were released and the workspaces with pending deliveries
    (with ``due_only``, only those with deliveries due now).
    """
    table = delivery_table(state)
    now = utcnow()
    stale = table.c.status == models.SENDING
    if not force:
        stale = sa.and_(stale, table.c.lease_expires_at < now)
    with state.db.engine.begin() as conn:
        released = conn.execute(
            table.update()
            .where(stale)
            .values(**_unclaimed(models.PENDING, now), updated_at=now)
        ).rowcount
        waiting = table.c.status == models.PENDING
        if due_only:
            waiting = sa.and_(waiting, table.c.next_attempt_at <= now)
        pending = [
            str(ws)
            for (ws,) in conn.execute(
                sa.select(table.c.workspace_id).where(waiting).distinct()
            )
        ]
    return int(released or 0), pending


def retry_failed(
    state: State, workspace_id: str | None = None
) -> tuple[int, list[str]]:
    """Give failed deliveries a new retry window.

    Returns how many, and their workspaces (to kick).
    """
    table = delivery_table(state)
    now = utcnow()
    query = sa.and_(table.c.status == models.FAILED, table.c.payload.is_not(None))
    if workspace_id is not None:
        query = sa.and_(query, table.c.workspace_id == workspace_id)
    with state.db.engine.begin() as conn:
        workspace_ids = [
            ws
            for (ws,) in conn.execute(
                sa.select(table.c.workspace_id).where(query).distinct()
            )
        ]
        n = conn.execute(
            table.update()
            .where(query)
            .values(
                status=models.PENDING,
                next_attempt_at=now,
                retry_until=now + dt.timedelta(seconds=state.config.retry_window),
                updated_at=now,
            )
        ).rowcount
    return int(n or 0), [str(ws) for ws in workspace_ids]
