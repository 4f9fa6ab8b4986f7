"""RQ jobs. Module-level functions with primitive arguments only (no secrets).

They need the Flask app context, which ``flask refiner-segment worker`` provides;
each job pushes a fresh context of that app, so it gets its own ``db.session``.
"""

from __future__ import annotations

import json
import logging
import time
import typing as t

from flask import current_app
from rq import get_current_job

from . import delivery
from . import queue as _queue
from . import workspaces
from .client import SegmentClient
from .extension import _get_state
from .models import utcnow
from .payload import BuildOptions
from .payload import InvalidCompletion
from .payload import MessageTooLarge
from .payload import build_messages
from .payload import chunk_batches
from .payload import completion_nps_score
from .signals import delivery_failed
from .signals import delivery_succeeded

if t.TYPE_CHECKING:
    import sqlalchemy as sa
    from rq import Queue

    from .extension import _State

logger = logging.getLogger("flask_refiner_segment")


def _app() -> t.Any:
    try:
        return current_app._get_current_object()  # type: ignore[attr-defined]
    except RuntimeError:
        raise RuntimeError(
            "flask-refiner-segment jobs need the Flask app context: run the worker"
            " with `flask refiner-segment worker`."
        ) from None


def _job_queue(state: _State) -> Queue:
    job = get_current_job()
    if job is not None:
        return _queue.make_queue(state, job.connection)
    return state.queue


def deliver(workspace_id: str) -> dict[str, int]:
    """Drain the workspace's due pending deliveries in batch requests."""
    with _app().app_context():
        state = _get_state()
        return _Drain(state, workspace_id, _job_queue(state)).run()


def record_completion(
    workspace_id: str,
    response_id: str | None,
    survey_id: str | None,
    user_id: str | None,
    payload: str,
) -> bool:
    """Record a completion that reached Redis while the database was down."""
    from .receiver import record

    with _app().app_context():
        state = _get_state()
        row = {
            "workspace_id": workspace_id,
            "response_id": response_id,
            "survey_id": survey_id,
            "user_id": user_id,
            "payload": payload,
            "nps_score": completion_nps_score(json.loads(payload)),
        }
        # A database error raises, so RQ retries the job.
        return record(state, row, fallback=False)


def sweep() -> dict[str, int]:
    """Periodic recovery: release expired leases, kick workspaces, reschedule."""
    with _app().app_context():
        state = _get_state()
        result = delivery.requeue(state)
        queue = _job_queue(state)
        _queue.schedule_sweep(state, queue, force=True)
        return result


class _Drain:
    """One run of :func:`deliver` for one workspace."""

    def __init__(self, state: _State, workspace_id: str, queue: Queue) -> None:
        self.state = state
        self.workspace_id = workspace_id
        self.queue = queue
        self.stats = {"sent": 0, "retry": 0, "failed": 0, "requests": 0}
        self.paused = False
        self.client: SegmentClient | None = None

    def run(self) -> dict[str, int]:
        state, ws = self.state, self.workspace_id
        # A later retry gets scheduled anew. The kick key stays while this job
        # drains, so completions recorded meanwhile do not queue more jobs.
        self.queue.connection.delete(_queue.retry_key(ws))
        seen = True
        try:
            self._drain()
        finally:
            # From now on a completion kicks a new job.
            seen = _queue.release_kick(self.queue.connection, ws)
        if not self.paused and self.client is not None:
            if seen:
                # A process that found the key taken may skip its kicks for this
                # long (queue.kick): what it records meanwhile is seen below.
                time.sleep(state.config.kick_cache_seconds)
            self._follow_up()
        _queue.schedule_sweep(state, self.queue)
        return self.stats

    def _drain(self) -> None:
        state, ws = self.state, self.workspace_id
        settings = workspaces.load(state, ws, fresh=True)
        if not settings.enabled or not settings.write_key or settings.paused:
            logger.info(
                "Deliveries of workspace %r wait: %s.",
                ws,
                "paused, the write key was rejected"
                if settings.paused
                else settings.skip_reason(None),
            )
            return
        self.settings = settings
        self.options = BuildOptions(
            trait_prefix=settings.trait_prefix,
            event_name=settings.track_event,
            library_version=state.version,
        )
        self.client = SegmentClient(
            settings.api_host,
            settings.write_key,
            connect_timeout=state.config.connect_timeout,
            read_timeout=state.config.read_timeout,
            retry_after_cap=state.config.retry_after_max,
        )
        deadline = time.monotonic() + state.config.job_timeout / 2
        started = utcnow()
        size, linger = state.config.batch_size, state.config.batch_linger
        try:
            while not self.paused and time.monotonic() < deadline:
                # Keep draining what arrives meanwhile (one job, not one per
                # kick, under steady load); once a batch is to be retried, only
                # what was due at the start: a retry waits in a later job.
                due_by = started if self.stats["retry"] else utcnow()
                rows = delivery.claim(state, ws, size, due_by)
                if not rows:
                    break
                self._send_rows(rows)
                if len(rows) < size and linger > 0 and not self.stats["retry"]:
                    time.sleep(linger)  # let the next batch fill up
        finally:
            self.client.close()

    def _follow_up(self) -> None:
        when = delivery.next_due(self.state, self.workspace_id)
        if when is None:
            return
        if when <= utcnow():
            _queue.kick(self.state, self.workspace_id)
        else:
            _queue.schedule_retry(self.state, self.queue, self.workspace_id, when)

    def _send_rows(self, rows: list[sa.Row[t.Any]]) -> None:
        built: list[sa.Row[t.Any]] = []
        groups: list[list[dict[str, t.Any]]] = []
        for row in rows:
            try:
                groups.append(
                    build_messages(
                        json.loads(row.payload),
                        self.options,
                        workspace_id=self.workspace_id,
                    )
                )
            except (MessageTooLarge, InvalidCompletion, ValueError, TypeError) as exc:
                self._fail([row], f"cannot be sent: {exc}", None)
                continue
            built.append(row)
        chunks = chunk_batches(groups)
        for n, chunk in enumerate(chunks):
            if self.paused:
                rest = [built[i].id for c in chunks[n:] for i in c]
                delivery.release(self.state, rest)
                return
            self._send_chunk([built[i] for i in chunk], [groups[i] for i in chunk])

    def _send_chunk(
        self, rows: list[sa.Row[t.Any]], groups: list[list[dict[str, t.Any]]]
    ) -> None:
        if self.paused:
            delivery.release(self.state, [row.id for row in rows])
            return
        messages = [m for group in groups for m in group]
        assert self.client is not None  # set before anything is claimed
        result = self.client.send(messages, attempt=max(row.attempts for row in rows))
        self.stats["requests"] += 1
        if result.outcome == "ok":
            ids = [row.id for row in rows]
            delivery.mark_sent(self.state, ids, result.status_code)
            self.stats["sent"] += len(rows)
            delivery_succeeded.send(
                current_app._get_current_object(),  # type: ignore[attr-defined]
                workspace_id=self.workspace_id,
                delivery_ids=ids,
                response_ids=[row.response_id for row in rows],
            )
        elif result.outcome == "retry":
            expired, next_at = delivery.mark_retry(
                self.state, self.workspace_id, rows, result
            )
            self.stats["retry"] += len(rows) - len(expired)
            gone = set(expired)
            self._fail(
                [r for r in rows if r.id in gone], result.error, None, mark=False
            )
            logger.warning(
                "Segment batch of %d deliveries will be retried at %s: %s",
                len(rows),
                next_at.isoformat(),
                result.error,
            )
        elif result.outcome == "unauthorized":
            self.paused = True
            reason = f"Segment rejected the write key: {result.error}"
            workspaces.mark_rejected(
                self.state,
                self.workspace_id,
                t.cast(str, self.settings.write_key),
                reason,
            )
            delivery.release(self.state, [row.id for row in rows], reason)
            logger.error("Workspace %r paused: %s", self.workspace_id, reason)
        elif len(rows) > 1:
            # One bad message must not hold the others hostage: bisect.
            half = len(rows) // 2
            self._send_chunk(rows[:half], groups[:half])
            self._send_chunk(rows[half:], groups[half:])
        else:
            reason = f"{result.error} {result.body}".strip()
            self._fail(rows, reason, result.status_code)

    def _fail(
        self,
        rows: list[sa.Row[t.Any]],
        reason: str,
        code: int | None,
        *,
        mark: bool = True,
    ) -> None:
        if not rows:
            return
        if mark:
            delivery.mark_failed(self.state, [row.id for row in rows], reason, code)
        self.stats["failed"] += len(rows)
        logger.error(
            "Deliveries %s failed: %s", [row.response_id for row in rows], reason
        )
        for row in rows:
            delivery_failed.send(
                current_app._get_current_object(),  # type: ignore[attr-defined]
                workspace_id=self.workspace_id,
                delivery_id=row.id,
                response_id=row.response_id,
                reason=reason,
                status_code=code,
            )
