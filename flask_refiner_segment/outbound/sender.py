"""Sending to Segment: a workspace's turn (its due deliveries, in batches), and
the test event. Turns are taken by serve jobs (:mod:`.serve`).

The Segment client is built here only (:func:`make_client`), from the
workspace's effective settings.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import typing as t

from ..core.messages import BuildOptions
from ..core.messages import build_messages
from ..core.messages import chunk_batches
from ..signals import delivery_failed
from ..signals import delivery_succeeded
from ..state import job_app
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


@dataclasses.dataclass
class Change:
    """A state change a turn asks for; ``kind`` says what follows it."""

    rows: list[sa.Row[t.Any]]
    values: dict[str, t.Any]
    #: ``sent``, ``failed``, ``expired`` (out of its retry window), ``retry``
    #: or ``released``.
    kind: str
    reason: str | None = None
    status_code: int | None = None


class Turn:
    """One workspace's turn: send its claimed deliveries (one write key per
    request), and say how their state changes.

    The state changes are not applied here: :meth:`send` (on a thread of a
    serve job) only talks to Segment and collects :attr:`changes` (and
    :attr:`bumps`, the workspace held back by a backoff); whoever claimed
    applies them, a serve job for the turns of many workspaces in one
    transaction (:mod:`.serve`), then calls :meth:`settle` with the ids each
    change reached (a stale claim's are left out) to count, log and signal.
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
        started: float = 0.0,
    ) -> None:
        self.state = state
        self.workspace_id = workspace_id
        self.queue = queue
        self.settings = current
        self.session = session
        #: When the workspace's turn started (``time.monotonic()``).
        self.started = started
        #: How many deliveries were claimed for it.
        self.claimed = 0
        #: The kick key was just renewed (the first request needs not).
        self.kick_kept = False
        self.stats = dict.fromkeys(self.STATS, 0)
        self.paused = False
        self.client: SegmentClient | None = None
        self.changes: list[Change] = []
        self.bumps: list[tuple[str, dt.datetime]] = []

    def start(self) -> bool:
        """Get ready to send; ``False`` when the workspace's deliveries wait
        (disabled, no key, paused)."""
        state, ws, current = self.state, self.workspace_id, self.settings
        if not current.sendable or current.paused:
            logger.info(
                "Deliveries of workspace %r wait: %s.",
                ws,
                "paused, the write key was rejected"
                if current.paused
                else current.skip_reason(None),
            )
            return False
        self.options = build_options(state, current)
        self.client = make_client(state, current, self.session)
        return True

    @property
    def retried(self) -> bool:
        """Segment asked to retry (the workspace backs off)."""
        return bool(self.bumps) or any(c.kind == "retry" for c in self.changes)

    def prepared(self, prepared: frozen.Prepared) -> None:
        """Take the outcome of freezing the claimed rows' messages: fail what
        cannot be built, log what was lost to a new claim meanwhile."""
        for row, reason in prepared.failed:
            self._fail([row], reason, None)
        self._lost(prepared.lost, [])

    def send(self, prepared: frozen.Prepared) -> None:
        """Send the prepared rows, batch after batch (HTTP only)."""
        try:
            built, groups = prepared.rows, prepared.groups
            chunks = chunk_batches(groups)
            for n, chunk in enumerate(chunks):
                if self.paused:
                    rest = [built[i] for c in chunks[n:] for i in c]
                    self._change(rest, outbox.released_values(), "released")
                    return
                self._send_chunk([built[i] for i in chunk], [groups[i] for i in chunk])
        finally:
            if self.client is not None:
                self.client.close()

    def _send_rows(self, rows: list[sa.Row[t.Any]]) -> None:
        """Freeze, send and record claimed rows now (one workspace's batch)."""
        prepared = frozen.prepare(self.state, rows, self.options, self.workspace_id)
        self.prepared(prepared)
        if prepared.rows:
            self.send(prepared)
        self.apply()

    def apply(self) -> None:
        """Apply this turn's state changes in one transaction, then settle."""
        changed, _ = outbox.transitions(
            self.state, [(c.rows, c.values) for c in self.changes], bumps=self.bumps
        )
        self.settle(changed)

    def settle(self, changed: t.Sequence[list[int]]) -> None:
        """The changes were applied, ``changed[i]`` the ids :attr:`changes`
        ``[i]`` reached: count, log and send the signals."""
        for change, ids in zip(self.changes, changed, strict=True):
            if change.kind != "expired":
                self._lost(change.rows, ids)
            got = set(ids)
            reached = [row for row in change.rows if int(row.id) in got]
            if change.kind == "sent":
                self.stats["sent"] += len(ids)
                if ids:
                    delivery_succeeded.send(
                        job_app(),
                        workspace_id=self.workspace_id,
                        delivery_ids=ids,
                        response_ids=[row.response_id for row in reached],
                    )
            elif change.kind == "retry":
                self.stats["retry"] += len(change.rows)
            elif change.kind in ("failed", "expired") and reached:
                self._failed(reached, t.cast(str, change.reason), change.status_code)
        self.changes, self.bumps = [], []

    def _change(
        self,
        rows: list[sa.Row[t.Any]],
        values: dict[str, t.Any],
        kind: str,
        reason: str | None = None,
        status_code: int | None = None,
    ) -> None:
        if rows:
            self.changes.append(Change(rows, values, kind, reason, status_code))

    def _send_chunk(
        self, rows: list[sa.Row[t.Any]], groups: list[list[dict[str, t.Any]]]
    ) -> None:
        if self.paused:
            self._change(rows, outbox.released_values(), "released")
            return
        messages = [m for group in groups for m in group]
        if self.client is None:  # set before anything is claimed
            raise RuntimeError("a turn sends only after its client is made")
        if self.kick_kept:
            self.kick_kept = False
        else:
            kick.keep_kick(self.state, self.queue.connection, self.workspace_id)
        result = self.client.send(messages, attempt=max(row.attempts for row in rows))
        self.stats["requests"] += 1
        if result.outcome == "ok":
            self._change(
                rows, outbox.sent_values(self.state, result.status_code), "sent"
            )
        elif result.outcome == "retry":
            next_at = self._retry(rows, result)
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
            self._change(rows, outbox.released_values(reason), "released")
            logger.error("Workspace %r paused: %s", self.workspace_id, reason)
        elif len(rows) > 1:
            # One bad message must not hold the others hostage: bisect.
            half = len(rows) // 2
            self._send_chunk(rows[:half], groups[:half])
            self._send_chunk(rows[half:], groups[half:])
        else:
            reason = f"{result.error} {result.body}".strip()
            self._fail(rows, reason, result.status_code)

    def _retry(self, rows: list[sa.Row[t.Any]], result: SendResult) -> dt.datetime:
        """Back off: fail what is out of its retry window, put the others back
        with the workspace held back; returns when to try again."""
        (expired, failed), (waiting, retry), next_at = outbox.retry_changes(
            self.state, rows, result
        )
        self._change(
            list(expired), failed, "expired", failed["reason"], result.status_code
        )
        self._change(list(waiting), retry, "retry")
        self.bumps.append((self.workspace_id, next_at))
        return next_at

    def _lost(self, rows: t.Sequence[sa.Row[t.Any]], changed: list[int]) -> None:
        """Log the claimed rows a state change did not reach (a stale claim)."""
        got = set(changed)
        lost = [row.response_id for row in rows if row.id not in got]
        if lost:
            logger.warning(
                "Deliveries %s were claimed again meanwhile (lease expired); this"
                " worker's outcome for them is dropped.",
                lost,
            )

    def _fail(self, rows: list[sa.Row[t.Any]], reason: str, code: int | None) -> None:
        values = outbox.failed_values(self.state, reason, code)
        self._change(rows, values, "failed", reason, code)

    def _failed(self, rows: list[sa.Row[t.Any]], reason: str, code: int | None) -> None:
        self.stats["failed"] += len(rows)
        logger.error(
            "Deliveries %s failed: %s", [row.response_id for row in rows], reason
        )
        for row in rows:
            delivery_failed.send(
                job_app(),
                workspace_id=self.workspace_id,
                delivery_id=row.id,
                response_id=row.response_id,
                reason=reason,
                status_code=code,
            )
