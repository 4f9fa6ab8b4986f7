"""Serve jobs: turns of every due workspace, a few at a time, in one job.

A kick puts a workspace in the ready set (:mod:`.kick`); a serve job takes the
due ones, earliest first, loads their settings in one query, and runs their
turns (:class:`.sender.Turn`) on ``SEND_THREADS`` threads, each keeping one
keep-alive session per Segment host. A turn sends for at most
``TURN_SECONDS``; a workspace with deliveries left goes back to the end of
the ready set, so a backlog, a failing or a slow Segment source holds one
thread for one turn and never the others. While more is due than its threads
take, a job starts another (up to ``SERVE_JOBS``, by default one per worker
listening on the queue), so that every worker takes turns. A job stops when
nothing is due, or after half of ``JOB_TIMEOUT`` (the next job goes on).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
import typing as t

import redis
import requests
import requests.adapters
import sqlalchemy as sa
from flask import Flask
from flask import current_app
from rq import Worker

from . import kick
from . import ready
from . import settings
from .sender import Turn

if t.TYPE_CHECKING:
    from rq import Queue

    from ..state import State
    from .settings import WorkspaceSettings

logger = logging.getLogger("flask_refiner_segment")


class Sessions:
    """One keep-alive :class:`requests.Session` per thread and Segment host."""

    def __init__(self, pool_size: int) -> None:
        self.pool_size = pool_size
        self._local = threading.local()
        self._all: list[requests.Session] = []
        self._lock = threading.Lock()

    def get(self, api_host: str) -> requests.Session:
        mine: dict[str, requests.Session] | None = getattr(
            self._local, "sessions", None
        )
        if mine is None:
            mine = self._local.sessions = {}
        session = mine.get(api_host)
        if session is None:
            session = mine[api_host] = requests.Session()
            adapter = requests.adapters.HTTPAdapter(
                pool_connections=1, pool_maxsize=self.pool_size
            )
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            for session in self._all:
                session.close()
            self._all.clear()


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
        #: Taken off the ready set, with their settings, waiting for a thread.
        self.waiting: collections.deque[tuple[str, WorkspaceSettings]] = (
            collections.deque()
        )
        self.running: dict[concurrent.futures.Future[dict[str, int]], str] = {}
        self._fanned_out = 0.0
        self._kept = 0.0

    def run(self) -> dict[str, int]:
        state, config = self.state, self.state.config
        app = t.cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
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
                    self._fill(app, pool, sessions)
                if time.monotonic() >= recover_at:
                    # A long job delays its worker's own recovery round.
                    recover_at = time.monotonic() + config.recovery_interval
                    self._recover()
                if not self.running:
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
                    continue
                done, _ = concurrent.futures.wait(
                    self.running,
                    timeout=config.batch_linger or 0.05,
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
                for future in done:
                    self._finished(future)
        finally:
            for future in concurrent.futures.as_completed(list(self.running)):
                self._finished(future)
            pool.shutdown(wait=True)
            sessions.close()
            self._hand_over()
        kick.schedule_sweep(state, self.queue)
        return self.stats

    def _fill(
        self,
        app: Flask,
        pool: concurrent.futures.ThreadPoolExecutor,
        sessions: Sessions,
    ) -> None:
        """Start turns on free threads, taking due workspaces off the ready set."""
        free = self.threads - len(self.running)
        if free <= 0:
            return
        if len(self.waiting) < free:
            taken, left = ready.pop(self.connection, 2 * free - len(self.waiting))
            if taken:
                loaded = settings.load_many(self.state, taken)
                self.waiting.extend((ws, loaded[ws]) for ws in taken)
            if left:
                self._fan_out()
        while free and self.waiting:
            ws, current = self.waiting.popleft()
            session = sessions.get(current.api_host) if current.write_key else None
            future = pool.submit(self._turn, app, ws, current, session)
            self.running[future] = ws
            free -= 1

    def _turn(
        self,
        app: Flask,
        ws: str,
        current: WorkspaceSettings,
        session: requests.Session | None,
    ) -> dict[str, int]:
        """A workspace's turn (on a thread of the pool); then it waits in the
        ready set again (time ran out) or its turn ends."""
        with app.app_context():
            turn = Turn(self.state, ws, self.queue, current, session=session)
            if turn.run() == "more":
                ready.add(self.connection, ws, time.time())
            else:
                ready.end_turn(self.state, self.connection, ws)
            return turn.stats

    def _recover(self) -> None:
        try:
            kick.recover(self.state, self.queue)
        except (redis.RedisError, sa.exc.SQLAlchemyError) as exc:
            logger.warning("Recovery round failed (%s).", type(exc).__name__)

    def _finished(self, future: concurrent.futures.Future[dict[str, int]]) -> None:
        ws = self.running.pop(future, None)
        if ws is None:
            return
        self.stats["turns"] += 1
        exc = future.exception()
        if exc is None:
            for key, value in future.result().items():
                self.stats[key] += value
        else:
            # Its claimed deliveries come back when their lease expires; the
            # recovery round kicks the workspace again. The others go on.
            logger.error(
                "The turn of workspace %r failed; its deliveries wait for the"
                " recovery round.",
                ws,
                exc_info=exc,
            )
            try:
                ready.end_turn(self.state, self.connection, ws)
            except redis.RedisError:
                pass

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
        if self.waiting:
            now = time.time()
            for ws, _ in self.waiting:
                ready.add(self.connection, ws, now)
            self.waiting.clear()
        if self.slot is not None:
            self.connection.delete(ready.serve_key(self.slot))
        idle = max(self.state.config.kick_cache_seconds, self.state.config.batch_linger)
        if ready.due_within(self.connection, idle) is not None:
            kick.start_serve(self.state, self.queue, self.slot or 0)


class Drain:
    """The ``deliver`` job of a workspace (a scheduled retry, or queued by an
    earlier version): the workspace goes to the ready set, then this job
    serves every due workspace."""

    def __init__(
        self,
        state: State,
        workspace_id: str,
        queue: Queue,
        *,
        scheduled: bool = False,
    ) -> None:
        self.state = state
        self.workspace_id = workspace_id
        self.queue = queue
        self.scheduled = scheduled

    def run(self) -> dict[str, int]:
        state, ws = self.state, self.workspace_id
        connection = self.queue.connection
        if self.scheduled and not kick.take_kick(state, connection, ws):
            # The workspace waits in the ready set or has its turn: that turn
            # sends what is due, and schedules what is not.
            logger.info("Workspace %r: a turn is queued or running.", ws)
            return dict.fromkeys(Turn.STATS, 0)
        # A later retry gets scheduled anew. The kick key (a kick's, or taken
        # above) stays until the workspace's turn ends.
        connection.delete(kick.retry_key(ws))
        ready.add(connection, ws, time.time())
        return Server(state, self.queue).run()
