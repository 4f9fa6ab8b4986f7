"""Serve jobs: turns of every due workspace, in rounds, in one job.

A kick puts a workspace in the ready set (:mod:`.kick`); a serve job takes the
due ones, earliest first, loads their settings in one query, and serves them
in rounds: one claim for all the round's workspaces (each up to
``BATCH_SIZE``), one freeze of their messages, then each workspace's requests
(one write key per request) on one of ``SEND_THREADS`` threads sharing a
keep-alive session per Segment host (:class:`.sender.Turn`). As turns finish,
their outcomes are applied together: one transaction of fenced state changes
for all (:func:`.outbox.transitions`), then one Redis round trip to end their
turns or put them back. A workspace whose batch was full goes on for up to
``TURN_SECONDS``, then goes back to the end of the ready set, so a backlog, a
failing or a slow Segment source holds one thread for one turn and never the
others. While more is due than its threads take, a job starts another (up to
``SERVE_JOBS``, by default one per worker listening on the queue), so that
every worker takes turns. A job stops when nothing is due, or after half of
``JOB_TIMEOUT`` (the next job goes on).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import typing as t

import redis
import sqlalchemy as sa
from flask import Flask
from rq import Worker

from ..state import job_app
from ..tables.base import utcnow
from . import claims
from . import frozen
from . import kick
from . import outbox
from . import ready
from . import settings
from .sender import Turn
from .sessions import Sessions

if t.TYPE_CHECKING:
    from rq import Queue

    from ..state import State
    from .settings import WorkspaceSettings

logger = logging.getLogger("flask_refiner_segment")

#: After the first turn of a round finished, how long the serve job waits at
#: most for the others in flight, to settle them together (s).
GATHER_SECONDS = 0.01

#: Turns in flight per sending thread: claimed, frozen and settled together,
#: so a round's database work is shared by this many turns per thread. A
#: queued turn waits behind at most this many requests per thread (each up
#: to ``READ_TIMEOUT``): keep it well within ``LEASE_SECONDS``.
TURNS_PER_THREAD = 8


class Server:
    """One serve job. ``slot``: the serve slot it holds (``None``: a
    ``deliver`` job, which holds none)."""

    def __init__(self, state: State, queue: Queue, slot: int | None = None) -> None:
        self.state = state
        self.queue = queue
        self.connection: redis.Redis = queue.connection
        self.slot = slot
        self.stats = dict.fromkeys((*Turn.STATS, "turns"), 0)
        self.threads = max(1, state.config.send_threads)
        #: Turns claimed and sending (or waiting for a thread).
        self.running: dict[concurrent.futures.Future[None], Turn] = {}
        #: Turns that sent nothing (nothing claimed), to settle.
        self.unsent: list[Turn] = []
        #: Workspaces whose turn goes on (a full batch, within ``TURN_SECONDS``
        #: of its start): their settings and when their turn started.
        self.again: list[tuple[WorkspaceSettings, float]] = []
        #: Taken off the ready set and not yet claimed (handed back if the
        #: job stops meanwhile).
        self.taken: list[str] = []
        self._fanned_out = 0.0
        self._kept = 0.0
        self._done = threading.Condition()

    def run(self) -> dict[str, int]:
        state, config = self.state, self.state.config
        app = job_app()
        deadline = time.monotonic() + config.job_timeout / 2
        recover_at = time.monotonic() + config.recovery_interval
        idle = max(config.kick_cache_seconds, config.batch_linger)
        sessions = Sessions(self.threads)
        pool = concurrent.futures.ThreadPoolExecutor(
            self.threads, thread_name_prefix="refiner-segment"
        )
        try:
            while True:
                if self.slot is not None and time.monotonic() - self._kept > 1:
                    self._kept = time.monotonic()
                    ready.keep_slot(state, self.connection, self.slot)
                going = time.monotonic() < deadline
                if going:
                    self._round(app, pool, sessions)
                if time.monotonic() >= recover_at:
                    # A long job delays its worker's own recovery round.
                    recover_at = time.monotonic() + config.recovery_interval
                    self._recover()
                self._gather()
                self._settle(app)
                if self.running or (going and self.again):
                    continue
                if not going:
                    break
                wait = ready.due_within(self.connection, idle)
                if wait is None:
                    if self.slot is None or not ready.leave_slot(
                        state, self.connection, self.slot, idle
                    ):
                        self.slot = None  # released
                        break
                    continue
                if wait > 0:
                    # A last look due within KICK_CACHE_SECONDS.
                    threading.Event().wait(wait)
        finally:
            concurrent.futures.wait(self.running)
            pool.shutdown(wait=True)
            self._settle(app)
            sessions.close()
            self._hand_over()
        kick.schedule_sweep(state, self.queue)
        return self.stats

    def _round(
        self,
        app: Flask,
        pool: concurrent.futures.ThreadPoolExecutor,
        sessions: Sessions,
    ) -> None:
        """Start the turns of a round: the workspaces whose turn goes on, then
        due ones off the ready set, up to ``TURNS_PER_THREAD`` per thread in
        flight. Their
        deliveries are claimed in one statement, their messages frozen in
        one; then each workspace's requests go on a thread."""
        free = TURNS_PER_THREAD * self.threads - len(self.running)
        if free <= 0:
            return
        found, self.again = self.again[:free], self.again[free:]
        self.taken = [current.workspace_id for current, _ in found]
        if len(found) < free:
            taken, left = ready.pop(self.connection, free - len(found))
            self.taken += taken
            if left:
                self._fan_out()
            if taken:
                loaded = settings.load_many(self.state, taken)
                now = time.monotonic()
                found += [(loaded[ws], now) for ws in taken]
        turns = []
        for current, started in found:
            turn = self._turn(current, sessions, started)
            if turn.start():
                turns.append(turn)
            else:
                self._end(turn.workspace_id)
        if not turns:
            self.taken = []
            return
        size = self.state.config.batch_size
        try:
            claimed = outbox.retrying(
                self.state,
                lambda: claims.claim_many(
                    self.state,
                    dict.fromkeys([turn.workspace_id for turn in turns], size),
                ),
            )
        except sa.exc.SQLAlchemyError as exc:
            # Nothing was claimed: the workspaces wait for the next round.
            logger.warning("A claim failed (%s); retrying.", type(exc).__name__)
            later = time.time() + (self.state.config.batch_linger or 0.05)
            for turn in turns:
                ready.add(self.connection, turn.workspace_id, later)
            self.taken = []
            return
        self.taken = []
        batches = [
            (claimed.get(turn.workspace_id, []), turn.options, turn.workspace_id)
            for turn in turns
        ]
        for turn, (rows, _, _) in zip(turns, batches, strict=True):
            turn.claimed = len(rows)
            turn.kick_kept = bool(rows)
        ready.keep_kicks(
            self.state, self.connection, [t.workspace_id for t in turns if t.claimed]
        )
        try:
            prepared = frozen.prepare_many(self.state, batches)
        except sa.exc.SQLAlchemyError:
            self._abandon(turns, "Freezing the messages")
            return
        for turn, ready_rows in zip(turns, prepared, strict=True):
            turn.prepared(ready_rows)
            if ready_rows.rows:
                future = pool.submit(self._send, app, turn, ready_rows)
                self.running[future] = turn
                future.add_done_callback(self._notify)
            else:
                self.unsent.append(turn)

    def _gather(self) -> None:
        """Wait for turns to finish: the first (for up to ``BATCH_LINGER``),
        then for up to ``GATHER_SECONDS`` more until all in flight are done,
        so that their state changes, and the claims of the next round, go to
        the database together instead of one turn at a time."""
        if not self.running:
            return
        linger = self.state.config.batch_linger or 0.05

        def finished() -> int:
            return sum(future.done() for future in self.running)

        with self._done:
            if not self._done.wait_for(lambda: finished() > 0, timeout=linger):
                return
            want = len(self.running)
            self._done.wait_for(
                lambda: finished() >= want, timeout=min(GATHER_SECONDS, linger)
            )

    def _notify(self, future: concurrent.futures.Future[None]) -> None:
        with self._done:
            self._done.notify_all()

    def _turn(
        self, current: WorkspaceSettings, sessions: Sessions, started: float
    ) -> Turn:
        session = sessions.get(current.api_host) if current.write_key else None
        return Turn(
            self.state,
            current.workspace_id,
            self.queue,
            current,
            session=session,
            started=started,
        )

    @staticmethod
    def _send(app: Flask, turn: Turn, prepared: frozen.Prepared) -> None:
        """A workspace's requests (on a thread of the pool)."""
        with app.app_context():
            turn.send(prepared)

    def _settle(self, app: Flask) -> None:
        """Apply the state changes of every turn that finished, in one
        transaction, then say what comes next for each workspace: its turn
        goes on, it waits behind the others, a retry is scheduled, or its
        turn ends."""
        done = [f for f in self.running if f.done()]
        turns = self.unsent
        self.unsent = []
        for future in done:
            turn = self.running.pop(future)
            exc = future.exception()
            if exc is None:
                turns.append(turn)
                continue
            # Its claimed deliveries come back when their lease expires; the
            # recovery round kicks the workspace again. The others go on.
            self.stats["turns"] += 1
            logger.error(
                "The turn of workspace %r failed; its deliveries wait for the"
                " recovery round.",
                turn.workspace_id,
                exc_info=exc,
            )
            self._end(turn.workspace_id)
        if not turns:
            return
        config = self.state.config
        full = {
            turn.workspace_id
            for turn in turns
            if turn.claimed >= config.batch_size
            and not turn.paused
            and not turn.retried
        }
        changes = [change for turn in turns for change in turn.changes]
        try:
            changed, due = outbox.transitions(
                self.state,
                [(change.rows, change.values) for change in changes],
                bumps=[bump for turn in turns for bump in turn.bumps],
                due_of=[
                    turn.workspace_id
                    for turn in turns
                    if not turn.paused and turn.workspace_id not in full
                ],
            )
        except sa.exc.SQLAlchemyError:
            self._abandon(turns, "Recording the outcomes")
            return
        ended: list[str] = []
        waiting: list[str] = []
        with app.app_context():
            for turn in turns:
                mine, changed = (
                    changed[: len(turn.changes)],
                    changed[len(turn.changes) :],
                )
                turn.settle(mine)
                self.stats["turns"] += 1
                for key, value in turn.stats.items():
                    self.stats[key] += value
                ws = turn.workspace_id
                if ws in full:
                    if time.monotonic() - turn.started < config.turn_seconds:
                        self.again.append((turn.settings, turn.started))
                    else:
                        waiting.append(ws)  # behind the others
                    continue
                when = due.get(ws)
                if turn.paused or when is None:
                    ended.append(ws)
                elif when <= utcnow():
                    waiting.append(ws)
                else:
                    # A backoff may end later than the retry already
                    # scheduled, which would then have been its last turn.
                    kick.schedule_retry(self.state, self.queue, ws, when)
                    ended.append(ws)
        try:
            ready.after_turns(self.state, self.connection, ended, waiting)
        except redis.RedisError as exc:
            # Their kick keys expire; the recovery round kicks them again.
            logger.warning(
                "Ending %d turns failed (%s).", len(turns), type(exc).__name__
            )

    def _abandon(self, turns: t.Sequence[Turn], what: str) -> None:
        """``what`` failed for ``turns``: log it and end them (their deliveries
        wait for the recovery round)."""
        logger.exception(
            "%s of %d turns failed; their deliveries wait for the recovery round.",
            what,
            len(turns),
        )
        for turn in turns:
            self._end(turn.workspace_id)

    def _end(self, workspace_id: str) -> None:
        try:
            ready.end_turn(self.state, self.connection, workspace_id)
        except redis.RedisError:
            pass

    def _recover(self) -> None:
        try:
            kick.recover(self.state, self.queue)
        except (redis.RedisError, sa.exc.SQLAlchemyError) as exc:
            logger.warning("Recovery round failed (%s).", type(exc).__name__)

    def _fan_out(self) -> None:
        """More is due than this job takes: start another serve job when a
        slot is free, at most every ``BATCH_LINGER`` (or 50 ms)."""
        now = time.monotonic()
        if now - self._fanned_out < (self.state.config.batch_linger or 0.05):
            return
        self._fanned_out = now
        limit = self.state.config.serve_jobs or Worker.count(
            connection=self.connection, queue=self.queue
        )
        first = 0 if self.slot is None else self.slot + 1
        for slot in range(first, max(1, limit)):
            if kick.start_serve(self.state, self.queue, slot):
                return

    def _hand_over(self) -> None:
        """The job stops: put back what it took and did not serve; release its
        slot, and when turns are due, make sure a serve job takes them."""
        now = time.time()
        for ws in [*self.taken, *(c.workspace_id for c, _ in self.again)]:
            ready.add(self.connection, ws, now)
        self.taken, self.again = [], []
        if self.slot is not None:
            self.connection.delete(ready.serve_key(self.slot))
        idle = max(self.state.config.kick_cache_seconds, self.state.config.batch_linger)
        if ready.due_within(self.connection, idle) is not None:
            kick.start_serve(self.state, self.queue, self.slot or 0)
