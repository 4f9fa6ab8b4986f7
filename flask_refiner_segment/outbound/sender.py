"""Sending to Segment: a workspace's turn (its due deliveries, in batches), and
the test event. Turns are taken by serve jobs (:mod:`.serve`).

The Segment client is built here only (:func:`make_client`), from the
workspace's effective settings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import typing as t

from flask import Flask
from flask import current_app

from ..core.messages import BuildOptions
from ..core.messages import build_messages
from ..core.messages import chunk_batches
from ..signals import delivery_failed
from ..signals import delivery_succeeded
from ..tables.base import utcnow
from . import frozen
from . import kick
from . import outbox
from . import settings
from .client import SegmentClient
from .client import SendResult

if t.TYPE_CHECKING:
    import requests
    import sqlalchemy as sa
    from rq import Queue

    from ..state import State
    from .settings import WorkspaceSettings

logger = logging.getLogger("flask_refiner_segment")


def make_client(
    state: State,
    current: WorkspaceSettings,
    session: requests.Session | None = None,
) -> SegmentClient:
    """A client for the workspace's Segment source (on ``session``, kept open,
    when given).

    :raise LookupError: the workspace has no write key.
    """
    if current.write_key is None:
        raise LookupError("No Segment write key is configured.")
    return SegmentClient(
        current.api_host,
        current.write_key,
        connect_timeout=state.config.connect_timeout,
        read_timeout=state.config.read_timeout,
        retry_after_cap=state.config.retry_after_max,
        session=session,
    )


def build_options(state: State, current: WorkspaceSettings) -> BuildOptions:
    """How the workspace's messages are built."""
    return BuildOptions(
        trait_prefix=current.trait_prefix,
        event_name=current.track_event,
        library_version=state.version,
        shown_event=state.config.shown_event,
        dismissed_event=state.config.dismissed_event,
    )


def _app() -> Flask:
    return t.cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]


#: The event name of *Send test event* (never the survey event's).
TEST_EVENT = "Segment Test Event"


def send_test(state: State, workspace_id: str | None = None) -> SendResult:
    """Send one test ``track`` synchronously and return Segment's answer.

    An accepted test lifts a 401/403 pause; a rejected key pauses deliveries.
    """
    ws = state.workspace(workspace_id)
    current = settings.load(state, ws, fresh=True)
    if not current.write_key:
        raise LookupError(current.error or "No Segment write key is configured.")
    if current.host_error:
        raise LookupError(current.host_error)
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
    # Its own event name and a ``test`` property: downstream tools must not
    # count it as a completed survey.
    options = dataclasses.replace(build_options(state, current), event_name=TEST_EVENT)
    track = [
        {**m, "properties": {**m["properties"], "test": True}}
        for m in build_messages(completion, options, workspace_id=ws)
        if m["type"] == "track"
    ]
    client = make_client(state, current)
    try:
        result = client.send(track)
    finally:
        client.close()
    if result.outcome == "ok" and current.paused:
        settings.clear_rejected(state, ws)
        kick.kick(state, ws)  # the deliveries that waited go now
    elif result.outcome == "unauthorized":
        settings.mark_rejected(state, ws, current.write_key, result.error)
    return result


class Turn:
    """One workspace's turn: claim and send its due deliveries, batch after
    batch, for at most ``TURN_SECONDS`` (at least one batch).

    :meth:`run` returns ``"more"`` when deliveries are left due (the turn used
    its time), ``"done"`` otherwise (nothing due, a retry scheduled, paused).
    """

    STATS = ("sent", "retry", "failed", "requests")

    def __init__(
        self,
        state: State,
        workspace_id: str,
        queue: Queue,
        current: WorkspaceSettings,
        *,
        session: requests.Session | None = None,
    ) -> None:
        self.state = state
        self.workspace_id = workspace_id
        self.queue = queue
        self.settings = current
        self.session = session
        self.stats = dict.fromkeys(self.STATS, 0)
        self.paused = False
        self.client: SegmentClient | None = None

    def run(self) -> str:
        state, ws, current = self.state, self.workspace_id, self.settings
        if not current.sendable or current.paused:
            logger.info(
                "Deliveries of workspace %r wait: %s.",
                ws,
                "paused, the write key was rejected"
                if current.paused
                else current.skip_reason(None),
            )
            return "done"
        self.options = build_options(state, current)
        self.client = make_client(state, current, self.session)
        deadline = time.monotonic() + state.config.turn_seconds
        size = state.config.batch_size
        try:
            while True:
                kick.keep_kick(state, self.queue.connection, ws)
                rows = outbox.claim(state, ws, size)
                if rows:
                    self._send_rows(rows)
                if len(rows) < size or self.paused or self.stats["retry"]:
                    break
                if time.monotonic() >= deadline:
                    return "more"
        finally:
            self.client.close()
        return "done" if self.paused else self._follow_up()

    def _follow_up(self) -> str:
        """Nothing more is due now: make sure the workspace's next pending
        delivery gets a turn when it is due (a backoff may end later than the
        retry already scheduled, which would otherwise have been its last
        turn); ``"more"`` when one came due meanwhile."""
        when = outbox.next_due(self.state, self.workspace_id)
        if when is None:
            return "done"
        if when <= utcnow():
            return "more"
        kick.schedule_retry(self.state, self.queue, self.workspace_id, when)
        return "done"

    def _send_rows(self, rows: list[sa.Row[t.Any]]) -> None:
        prepared = frozen.prepare(self.state, rows, self.options, self.workspace_id)
        for row, reason in prepared.failed:
            self._fail([row], reason, None)
        self._lost(prepared.lost, [])
        built, groups = prepared.rows, prepared.groups
        chunks = chunk_batches(groups)
        for n, chunk in enumerate(chunks):
            if self.paused:
                rest = [built[i] for c in chunks[n:] for i in c]
                outbox.release(self.state, rest)
                return
            self._send_chunk([built[i] for i in chunk], [groups[i] for i in chunk])

    def _send_chunk(
        self, rows: list[sa.Row[t.Any]], groups: list[list[dict[str, t.Any]]]
    ) -> None:
        if self.paused:
            outbox.release(self.state, rows)
            return
        messages = [m for group in groups for m in group]
        if self.client is None:  # set before anything is claimed
            raise RuntimeError("a drain sends only after its client is made")
        kick.keep_kick(self.state, self.queue.connection, self.workspace_id)
        result = self.client.send(messages, attempt=max(row.attempts for row in rows))
        self.stats["requests"] += 1
        if result.outcome == "ok":
            ids = outbox.mark_sent(self.state, rows, result.status_code)
            self._lost(rows, ids)
            self.stats["sent"] += len(ids)
            if ids:
                delivery_succeeded.send(
                    _app(),
                    workspace_id=self.workspace_id,
                    delivery_ids=ids,
                    response_ids=[row.response_id for row in rows if row.id in ids],
                )
        elif result.outcome == "retry":
            expired, next_at = self._mark_retry(rows, result)
            self.stats["retry"] += len(rows) - len(expired)
            gone = set(expired)
            self._fail(
                [r for r in rows if r.id in gone], result.error, None, marked=expired
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
            settings.mark_rejected(
                self.state,
                self.workspace_id,
                t.cast(str, self.settings.write_key),
                reason,
            )
            outbox.release(self.state, rows, reason)
            logger.error("Workspace %r paused: %s", self.workspace_id, reason)
        elif len(rows) > 1:
            # One bad message must not hold the others hostage: bisect.
            half = len(rows) // 2
            self._send_chunk(rows[:half], groups[:half])
            self._send_chunk(rows[half:], groups[half:])
        else:
            reason = f"{result.error} {result.body}".strip()
            self._fail(rows, reason, result.status_code)

    def _mark_retry(
        self, rows: list[sa.Row[t.Any]], result: SendResult
    ) -> tuple[list[int], dt.datetime]:
        """Back off: the ids that failed for good, and when to try again."""
        return outbox.mark_retry(self.state, self.workspace_id, rows, result)

    def _lost(self, rows: list[sa.Row[t.Any]], changed: list[int]) -> None:
        """Log the claimed rows a state change did not reach (a stale claim)."""
        lost = [row.response_id for row in rows if row.id not in set(changed)]
        if lost:
            logger.warning(
                "Deliveries %s were claimed again meanwhile (lease expired); this"
                " worker's outcome for them is dropped.",
                lost,
            )

    def _fail(
        self,
        rows: list[sa.Row[t.Any]],
        reason: str,
        code: int | None,
        *,
        marked: list[int] | None = None,
    ) -> None:
        if not rows:
            return
        if marked is None:
            marked = outbox.mark_failed(self.state, rows, reason, code)
            self._lost(rows, marked)
        rows = [row for row in rows if row.id in set(marked)]
        if not rows:
            return
        self.stats["failed"] += len(rows)
        logger.error(
            "Deliveries %s failed: %s", [row.response_id for row in rows], reason
        )
        for row in rows:
            delivery_failed.send(
                _app(),
                workspace_id=self.workspace_id,
                delivery_id=row.id,
                response_id=row.response_id,
                reason=reason,
                status_code=code,
            )
