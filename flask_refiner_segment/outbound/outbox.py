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
import uuid

import sqlalchemy as sa

from ..tables import outbound as models
from ..tables.base import utcnow

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


def claim(
    state: State,
    workspace_id: str,
    limit: int,
    due_by: dt.datetime | None = None,
    *,
    status: str = models.PENDING,
) -> list[Claimed]:
    """Lease up to ``limit`` pending deliveries due by ``due_by`` (default now);
    with ``status="backfill"`` a backfill's deliveries (its own jobs only).

    Safe with several workers: the ``status = 'pending'`` condition of the
    ``UPDATE`` is re-checked on rows another worker claimed meanwhile, and
    PostgreSQL skips rows locked by a concurrent claim. The claimed rows come
    back from the ``UPDATE .. RETURNING`` itself.
    """
    table = delivery_table(state)
    now = utcnow()
    due_by = now if due_by is None else min(due_by, now)
    token = uuid.uuid4().hex
    due = (
        sa.select(table.c.id)
        .where(
            table.c.workspace_id == workspace_id,
            table.c.status == status,
            table.c.next_attempt_at <= due_by,
        )
        .order_by(table.c.id)
        .limit(limit)
    )
    with bookkeeping(state) as conn:
        if conn.dialect.name == "postgresql":
            # Lock the due rows first. As ``IN (subquery)`` PostgreSQL may run
            # the ``LIMIT .. FOR UPDATE SKIP LOCKED`` subquery once per outer
            # row, each run skipping the rows already taken: it would claim
            # every due row instead of ``limit``.
            ids = list(conn.execute(due.with_for_update(skip_locked=True)).scalars())
            if not ids:
                return []
            chosen = table.c.id.in_(ids)
        else:
            chosen = table.c.id.in_(due.scalar_subquery())
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
                table.c.response_id,
                table.c.payload,
                table.c.messages,
                table.c.attempts,
                table.c.retry_until,
                table.c.claim_token,
            )
        ).all()
    return sorted(rows, key=lambda row: int(row.id))


def _transition(state: State, rows: t.Sequence[Claimed], **values: t.Any) -> list[int]:
    """Apply ``values`` to the claimed ``rows`` that their claim still holds.

    Fenced: a row changes only while its ``claim_token`` is the one its claim
    set and it is still ``sending``, so a late answer to a stale claim (its
    lease expired and another worker took the row) changes nothing. A lost
    connection is retried (``DB_RETRY_DELAYS``), which the fence makes safe.
    Returns the ids that changed.
    """
    if not rows:
        return []
    table = delivery_table(state)
    values.setdefault("updated_at", utcnow())
    by_claim: dict[str, list[int]] = {}
    for row in rows:
        by_claim.setdefault(str(row.claim_token), []).append(int(row.id))

    def apply() -> list[int]:
        changed: list[int] = []
        with bookkeeping(state) as conn:
            for token, ids in by_claim.items():
                changed += conn.execute(
                    table.update()
                    .where(
                        table.c.id.in_(ids),
                        table.c.claim_token == token,
                        table.c.status == models.SENDING,
                    )
                    .values(**values)
                    .returning(table.c.id)
                ).scalars()
        return sorted(changed)

    return retrying(state, apply)


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


def _attempted(
    state: State,
    rows: t.Sequence[Claimed],
    status: str,
    *,
    reason: str | None,
    status_code: int | None,
    next_attempt_at: dt.datetime | None = None,
    **values: t.Any,
) -> list[int]:
    """Record an attempt at sending claimed deliveries: count it, keep its
    outcome (``reason``, ``status_code``) and end the claim. Returns the ids
    that changed (see :func:`_transition`)."""
    return _transition(
        state,
        rows,
        attempts=delivery_table(state).c.attempts + 1,
        reason=reason,
        last_status_code=status_code,
        **_unclaimed(status, next_attempt_at),
        **values,
    )


def mark_sent(
    state: State, rows: t.Sequence[Claimed], status_code: int | None
) -> list[int]:
    """Segment took the claimed ``rows``; returns the ids that changed."""
    return _attempted(
        state, rows, models.SENT, reason=None, status_code=status_code, sent_at=utcnow()
    )


def mark_failed(
    state: State,
    rows: t.Sequence[Claimed],
    reason: str,
    status_code: int | None = None,
) -> list[int]:
    """The claimed ``rows`` failed for good; returns the ids that changed."""
    return _attempted(
        state, rows, models.FAILED, reason=reason, status_code=status_code
    )


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
    now = utcnow()
    attempts = max(row.attempts for row in rows) + 1
    next_at = now + dt.timedelta(seconds=backoff(state, attempts, result.retry_after))
    out_of_time = [
        row
        for row in rows
        if row.retry_until is not None and row.retry_until <= next_at
    ]
    waiting = [row for row in rows if row not in out_of_time]
    reason = f"{result.error} (retrying)"
    expired = mark_failed(
        state,
        out_of_time,
        f"gave up after the retry window: {result.error}",
        result.status_code,
    )
    _attempted(
        state,
        waiting,
        models.PENDING,
        reason=reason,
        status_code=result.status_code,
        next_attempt_at=next_at,
    )
    table = delivery_table(state)
    with state.db.engine.begin() as conn:
        conn.execute(
            table.update()
            .where(
                table.c.workspace_id == workspace_id,
                table.c.status == models.PENDING,
                table.c.next_attempt_at < next_at,
            )
            .values(next_attempt_at=next_at)
        )
    return expired, next_at


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
    values: dict[str, t.Any] = {}
    if reason is not None:
        values["reason"] = reason
    return _transition(state, rows, **_unclaimed(models.PENDING, utcnow()), **values)


def next_due(state: State, workspace_id: str) -> dt.datetime | None:
    """When the earliest pending delivery of a workspace is due."""
    table = delivery_table(state)
    with state.db.engine.connect() as conn:
        return t.cast(
            "dt.datetime | None",
            conn.execute(
                sa.select(sa.func.min(table.c.next_attempt_at)).where(
                    table.c.workspace_id == workspace_id,
                    table.c.status == models.PENDING,
                )
            ).scalar(),
        )


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
