"""State changes of deliveries in the database (the durable outbox).

Every function uses its own short transaction on ``db.engine``; none touches the
host's ``db.session``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import typing as t
import uuid

import sqlalchemy as sa

from . import models
from . import queue as _queue
from . import workspaces
from .models import utcnow

if t.TYPE_CHECKING:
    from .client import SendResult
    from .extension import _State


def _table(state: _State) -> sa.Table:
    return t.cast(sa.Table, state.models.Delivery.__table__)


@contextlib.contextmanager
def _bookkeeping(state: _State) -> t.Iterator[sa.Connection]:
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
    state: _State, workspace_id: str, limit: int, due_by: dt.datetime | None = None
) -> list[sa.Row[t.Any]]:
    """Lease up to ``limit`` pending deliveries due by ``due_by`` (default now).

    Safe with several workers: the outer ``status = 'pending'`` condition is
    re-checked on rows another worker claimed meanwhile, and PostgreSQL skips
    rows locked by a concurrent claim.
    """
    table = _table(state)
    now = utcnow()
    due_by = now if due_by is None else min(due_by, now)
    token = uuid.uuid4().hex
    due = (
        sa.select(table.c.id)
        .where(
            table.c.workspace_id == workspace_id,
            table.c.status == models.PENDING,
            table.c.next_attempt_at <= due_by,
        )
        .order_by(table.c.id)
        .limit(limit)
    )
    if state.db.engine.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    with _bookkeeping(state) as conn:
        conn.execute(
            table.update()
            .where(table.c.id.in_(due.scalar_subquery()))
            .where(table.c.status == models.PENDING)
            .values(
                status=models.SENDING,
                claim_token=token,
                lease_expires_at=now + dt.timedelta(seconds=state.config.lease_seconds),
                updated_at=now,
            )
        )
        rows = conn.execute(
            sa.select(
                table.c.id,
                table.c.response_id,
                table.c.payload,
                table.c.attempts,
                table.c.retry_until,
            )
            .where(table.c.claim_token == token)
            .order_by(table.c.id)
        ).all()
    return list(rows)  # type: ignore[arg-type]


def _update(state: _State, ids: t.Sequence[int], **values: t.Any) -> None:
    if not ids:
        return
    table = _table(state)
    values.setdefault("updated_at", utcnow())
    with _bookkeeping(state) as conn:
        conn.execute(table.update().where(table.c.id.in_(list(ids))).values(**values))


def mark_sent(state: _State, ids: t.Sequence[int], status_code: int | None) -> None:
    now = utcnow()
    _update(
        state,
        ids,
        status=models.SENT,
        sent_at=now,
        attempts=_table(state).c.attempts + 1,
        last_status_code=status_code,
        reason=None,
        claim_token=None,
        lease_expires_at=None,
        next_attempt_at=None,
    )


def mark_failed(
    state: _State, ids: t.Sequence[int], reason: str, status_code: int | None = None
) -> None:
    _update(
        state,
        ids,
        status=models.FAILED,
        attempts=_table(state).c.attempts + 1,
        reason=reason,
        last_status_code=status_code,
        claim_token=None,
        lease_expires_at=None,
        next_attempt_at=None,
    )


def backoff(state: _State, attempts: int, retry_after: float | None) -> float:
    """Seconds to wait after ``attempts`` failed attempts: exponential with jitter.

    ``Retry-After`` (already capped by the client) is a floor.
    """
    config = state.config
    ceiling = min(config.backoff_max, config.backoff_base * 2 ** max(0, attempts - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, config.retry_after_max))
    return delay


def mark_retry(
    state: _State,
    workspace_id: str,
    rows: t.Sequence[sa.Row[t.Any]],
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
    expired = [
        row.id
        for row in rows
        if row.retry_until is not None and row.retry_until <= next_at
    ]
    waiting = [row.id for row in rows if row.id not in set(expired)]
    reason = f"{result.error} (retrying)"
    mark_failed(
        state,
        expired,
        f"gave up after the retry window: {result.error}",
        result.status_code,
    )
    _update(
        state,
        waiting,
        status=models.PENDING,
        attempts=_table(state).c.attempts + 1,
        reason=reason,
        last_status_code=result.status_code,
        next_attempt_at=next_at,
        claim_token=None,
        lease_expires_at=None,
    )
    table = _table(state)
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


def release(state: _State, ids: t.Sequence[int], reason: str | None = None) -> None:
    """Return claimed deliveries unsent (the write key was rejected)."""
    values: dict[str, t.Any] = {}
    if reason is not None:
        values["reason"] = reason
    _update(
        state,
        ids,
        status=models.PENDING,
        next_attempt_at=utcnow(),
        claim_token=None,
        lease_expires_at=None,
        **values,
    )


def next_due(state: _State, workspace_id: str) -> dt.datetime | None:
    """When the earliest pending delivery of a workspace is due."""
    table = _table(state)
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


def counts(state: _State, workspace_id: str | None = None) -> dict[str, int]:
    """Deliveries per status (every status listed, zeros included)."""
    table = _table(state)
    query = sa.select(table.c.status, sa.func.count()).group_by(table.c.status)
    if workspace_id is not None:
        query = query.where(table.c.workspace_id == workspace_id)
    with state.db.engine.connect() as conn:
        found = {status: int(n) for status, n in conn.execute(query)}
    return {status: found.get(status, 0) for status in models.STATUSES}


def requeue(state: _State, *, force: bool = False) -> dict[str, int]:
    """Recover deliveries whose job was lost, and make sure jobs will run.

    Deliveries claimed by a worker that died (lease expired; with ``force`` every
    claimed one) go back to pending, and a drain job is enqueued for every
    workspace with pending deliveries. Returns ``{"released": n, "workspaces": m}``.
    """
    table = _table(state)
    now = utcnow()
    stale = table.c.status == models.SENDING
    if not force:
        stale = sa.and_(stale, table.c.lease_expires_at < now)
    with state.db.engine.begin() as conn:
        released = conn.execute(
            table.update()
            .where(stale)
            .values(
                status=models.PENDING,
                next_attempt_at=now,
                claim_token=None,
                lease_expires_at=None,
                updated_at=now,
            )
        ).rowcount
        pending = [
            ws
            for (ws,) in conn.execute(
                sa.select(table.c.workspace_id)
                .where(table.c.status == models.PENDING)
                .distinct()
            )
        ]
    for workspace_id in pending:
        state.redis.delete(_queue.kick_key(workspace_id))
        _queue.kick(state, workspace_id)
    return {"released": int(released or 0), "workspaces": len(pending)}


def retry_failed(state: _State, workspace_id: str | None = None) -> int:
    """Give failed deliveries a new retry window; returns how many."""
    table = _table(state)
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
    for ws in workspace_ids:
        _queue.kick(state, ws)
    return int(n or 0)


def send_test(state: _State, workspace_id: str | None = None) -> SendResult:
    """Send one test ``track`` synchronously and return Segment's answer.

    An accepted test lifts a 401/403 pause; a rejected key pauses deliveries.
    """
    from .client import SegmentClient
    from .payload import BuildOptions
    from .payload import build_messages

    ws = workspace_id or state.config.default_workspace
    settings = workspaces.load(state, ws, fresh=True)
    if not settings.write_key:
        raise LookupError(settings.error or "No Segment write key is configured.")
    now = dt.datetime.now(dt.timezone.utc)
    completion = {
        "user_id": "refiner-segment-test",
        "survey": {"id": "refiner-segment-test", "name": "Test event", "questions": []},
        "response": {
            "id": f"test-{now.timestamp():.6f}",
            "completed_at": now.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            ),
            "answers": {},
        },
        "account": None,
        "user_traits": {},
    }
    options = BuildOptions(
        trait_prefix=settings.trait_prefix,
        event_name=settings.track_event,
        library_version=state.version,
    )
    track = [
        m
        for m in build_messages(completion, options, workspace_id=ws)
        if m["type"] == "track"
    ]
    client = SegmentClient(
        settings.api_host,
        settings.write_key,
        connect_timeout=state.config.connect_timeout,
        read_timeout=state.config.read_timeout,
        retry_after_cap=state.config.retry_after_max,
    )
    try:
        result = client.send(track)
    finally:
        client.close()
    if result.outcome == "ok" and settings.paused:
        workspaces.clear_rejected(state, ws)
        _queue.kick(state, ws)  # the deliveries that waited go now
    elif result.outcome == "unauthorized":
        workspaces.mark_rejected(state, ws, settings.write_key, result.error)
    return result
