"""Sending what a backfill recorded, on the backfill's own RQ queue.

A backfill records its deliveries with the status ``backfill``: live drains
never claim them. One chain of jobs per workspace sends them: each job claims
one batch (at most ``--rate`` deliveries a second), sends it like a live drain
(same frozen messages, fencing and failure handling; a retry stays in the
backfill's lane), and enqueues the next job at the end of the backfill queue.
``flask refiner-segment worker`` listens to the live queue first, so between
two backfill batches every live job waiting is taken first.

A Redis key per workspace keeps one chain; if the chain is lost (a worker
killed), the key expires and the periodic sweep starts a new one.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import typing as t

import sqlalchemy as sa
from rq import Queue
from rq import get_current_job

from ..state import get_state
from ..state import job_app
from ..tables import outbound as models
from ..tables.base import utcnow
from . import claims
from . import kick as live
from . import outbox
from . import settings
from .ready import KEY_PREFIX
from .sender import Turn
from .sender import build_options
from .sender import make_client

if t.TYPE_CHECKING:
    import redis

    from ..state import State
    from .client import SendResult

logger = logging.getLogger("flask_refiner_segment")

SEND_JOB = "flask_refiner_segment.outbound.backfill_send.send"
#: How long a chain's key outlives its last job (s).
LOCK_TTL = 60


def lock_key(workspace_id: str) -> str:
    return f"{KEY_PREFIX}backfill-send:{workspace_id}"


def rate_key(workspace_id: str) -> str:
    return f"{KEY_PREFIX}backfill-rate:{workspace_id}"


def make_queue(state: State, connection: redis.Redis | None = None) -> Queue:
    """The backfill's RQ queue."""
    return Queue(
        state.config.backfill_queue,
        connection=connection if connection is not None else state.redis,
        default_timeout=state.config.job_timeout,
    )


def set_rate(state: State, workspace_id: str, rate: int | None) -> None:
    """At most ``rate`` backfill deliveries a second (``None``: one batch at a
    time, as fast as Segment answers)."""
    if rate:
        state.redis.set(rate_key(workspace_id), str(int(rate)))
    else:
        state.redis.delete(rate_key(workspace_id))


def start(state: State, workspace_id: str, *, delay: float = 0.0) -> bool:
    """Start the workspace's chain of send jobs unless one runs; ``True`` when
    this call started it.

    :raise redis.RedisError: Redis is unavailable.
    """
    ttl = int(LOCK_TTL + delay)
    if not state.redis.set(lock_key(workspace_id), b"1", nx=True, ex=ttl):
        return False
    _enqueue(state, make_queue(state), workspace_id, delay)
    return True


def _enqueue(state: State, queue: Queue, workspace_id: str, delay: float) -> None:
    options = live.job_options(state)
    if delay > 0:
        queue.enqueue_in(dt.timedelta(seconds=delay), SEND_JOB, workspace_id, **options)
    else:
        queue.enqueue(SEND_JOB, workspace_id, **options)


def waiting(state: State, workspace_id: str | None = None) -> int:
    """How many deliveries recorded by a backfill are not sent yet."""
    table = outbox.delivery_table(state)
    query = sa.select(sa.func.count()).where(table.c.status == models.BACKFILL)
    if workspace_id is not None:
        query = query.where(table.c.workspace_id == workspace_id)
    with state.db.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def resume(state: State) -> int:
    """Start the chains of workspaces with backfill deliveries waiting and no
    chain running (the periodic sweep calls this); returns how many started."""
    table = outbox.delivery_table(state)
    with state.db.engine.connect() as conn:
        found = conn.execute(
            sa.select(table.c.workspace_id)
            .where(table.c.status == models.BACKFILL)
            .distinct()
        ).scalars()
        workspace_ids = [str(ws) for ws in found]
    return sum(start(state, ws) for ws in workspace_ids)


def _next_due(state: State, workspace_id: str) -> dt.datetime | None:
    table = outbox.delivery_table(state)
    with state.db.engine.connect() as conn:
        return t.cast(
            "dt.datetime | None",
            conn.execute(
                sa.select(sa.func.min(table.c.next_attempt_at)).where(
                    table.c.workspace_id == workspace_id,
                    table.c.status == models.BACKFILL,
                )
            ).scalar(),
        )


class BackfillBatch(Turn):
    """One batch of a workspace's backfill deliveries (the ``send`` job)."""

    def run_batch(self) -> dict[str, int]:
        """Send one batch, then queue the next job (or end the chain)."""
        state, ws, connection = self.state, self.workspace_id, self.queue.connection
        started = time.monotonic()
        raw = connection.get(rate_key(ws))
        rate = int(raw) if raw else 0
        size = min(state.config.batch_size, rate) if rate else state.config.batch_size
        current = self.settings
        if not current.sendable or current.paused:
            logger.info("Backfill of workspace %r waits: nothing can be sent.", ws)
            connection.delete(lock_key(ws))  # the sweep starts it again
            return self.stats
        self.options = build_options(state, current)
        self.client = make_client(state, current)
        try:
            rows = claims.claim(state, ws, size, status=models.BACKFILL)
            rows = self._drop_superseded(rows)
            if rows:
                self._send_rows(rows)
        finally:
            self.client.close()
        when = _next_due(state, ws)
        if self.paused or when is None:
            connection.delete(lock_key(ws))
            return self.stats
        delay = max(0.0, (when - utcnow()).total_seconds())
        if rate:
            delay = max(delay, 1.0 - (time.monotonic() - started))
        connection.expire(lock_key(ws), int(LOCK_TTL + delay))
        _enqueue(state, self.queue, ws, delay)
        return self.stats

    def _drop_superseded(self, rows: list[sa.Row[t.Any]]) -> list[sa.Row[t.Any]]:
        """Skip claimed rows whose response was recorded again since with other
        content (a live edit went ahead of the backfill): sending the older
        content now would overwrite the newer at Segment."""
        if not rows:
            return rows
        state = self.state
        table = outbox.delivery_table(state)
        responses = t.cast(sa.Table, state.tables.outbound.SurveyResponse.__table__)
        ids = [int(row.id) for row in rows]
        with state.db.engine.connect() as conn:
            stale = set(
                conn.execute(
                    sa.select(table.c.id)
                    .join(
                        responses,
                        sa.and_(
                            responses.c.workspace_id == table.c.workspace_id,
                            responses.c.response_id == table.c.response_id,
                        ),
                    )
                    .where(
                        table.c.id.in_(ids),
                        responses.c.content_hash != table.c.content_hash,
                    )
                ).scalars()
            )
        if not stale:
            return rows
        outbox.end_claim(
            state,
            [row for row in rows if row.id in stale],
            models.SKIPPED,
            reason="superseded: the response was recorded again with newer content",
        )
        self.stats["skipped"] = self.stats.get("skipped", 0) + len(stale)
        return [row for row in rows if row.id not in stale]

    def _retry(self, rows: list[sa.Row[t.Any]], result: SendResult) -> dt.datetime:
        """Back off in the backfill's lane; a delivery's retry window starts
        at its first attempt (a rate-limited backfill may wait for days)."""
        state = self.state
        now = utcnow()
        attempts = max(row.attempts for row in rows) + 1
        wait = outbox.backoff(state, attempts, result.retry_after)
        next_at = now + dt.timedelta(seconds=wait)
        out_of_time = [
            row
            for row in rows
            if row.attempts
            and row.retry_until is not None
            and row.retry_until <= next_at
        ]
        reason = f"gave up after the retry window: {result.error}"
        failed = outbox.failed_values(state, reason, result.status_code)
        self._change(out_of_time, failed, "expired", reason, result.status_code)
        first = [row for row in rows if not row.attempts]
        later = [row for row in rows if row.attempts and row not in out_of_time]
        window = now + dt.timedelta(seconds=state.config.retry_window)
        for group, values in ((first, {"retry_until": window}), (later, {})):
            retry = outbox.attempted_values(
                state,
                models.BACKFILL,
                reason=f"{result.error} (retrying)",
                status_code=result.status_code,
                next_attempt_at=next_at,
                **values,
            )
            self._change(group, retry, "retry")
        return next_at


def send(workspace_id: str) -> dict[str, int]:
    """RQ job: send one batch of the workspace's backfill, then queue the next."""
    with job_app().app_context():
        state = get_state()
        job = get_current_job()
        queue = make_queue(state, job.connection if job is not None else None)
        current = settings.load(state, workspace_id, fresh=True)
        return BackfillBatch(state, workspace_id, queue, current).run_batch()
