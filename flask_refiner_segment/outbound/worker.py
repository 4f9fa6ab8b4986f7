"""The RQ workers of ``flask refiner-segment worker``: recovery in their own loop.

RQ's scheduler runs the retries enqueued for when a backoff ends, RQ's own job
retries and the periodic sweep. These workers do not depend on it for recovery:
every ``RECOVERY_INTERVAL`` (in their idle loop, and between jobs) they release
expired leases, kick workspaces with due deliveries and reschedule a lost sweep.
"""

from __future__ import annotations

import logging
import math
import time
import typing as t

import redis
import sqlalchemy as sa
from rq import SimpleWorker
from rq import Worker

from . import kick

if t.TYPE_CHECKING:
    from rq import Queue

    from ..state import State

logger = logging.getLogger("flask_refiner_segment")


class _Recovering:
    """Mixin for an RQ worker class: the extension's recovery as a maintenance task."""

    refiner_state: State
    refiner_queue: Queue
    _recovery_due: float

    def setup_recovery(self, state: State, queue: Queue) -> None:
        """Recover every ``RECOVERY_INTERVAL`` from now on (the caller has just
        recovered once), through ``queue``."""
        self.refiner_state = state
        self.refiner_queue = queue
        self._recovery_due = time.monotonic() + state.config.recovery_interval

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return time.monotonic() >= self._recovery_due or bool(
            super().should_run_maintenance_tasks  # type: ignore[misc]
        )

    def run_maintenance_tasks(self) -> None:
        if time.monotonic() >= self._recovery_due:
            self._recovery_due = (
                time.monotonic() + self.refiner_state.config.recovery_interval
            )
            self.recover()
        if super().should_run_maintenance_tasks:  # type: ignore[misc]
            super().run_maintenance_tasks()  # type: ignore[misc]

    def recover(self) -> None:
        """One recovery round; a Redis or database error waits for the next."""
        state = self.refiner_state
        try:
            result = kick.recover(state, self.refiner_queue)
        except (redis.RedisError, sa.exc.SQLAlchemyError) as exc:
            logger.warning(
                "Recovery round failed (%s); trying again in %g s.",
                type(exc).__name__,
                state.config.recovery_interval,
            )
            return
        finally:
            # Work horses are forked from this process: they must not share
            # its database connections.
            state.db.engine.dispose()
        if result is not None and result["released"]:
            logger.warning(
                "Released %d deliveries of a lost worker.", result["released"]
            )


class RecoveringWorker(_Recovering, Worker):
    """An RQ :class:`~rq.Worker` (a work horse per job) with the recovery loop."""


class RecoveringSimpleWorker(_Recovering, SimpleWorker):
    """An RQ :class:`~rq.SimpleWorker` (jobs in-process) with the recovery loop."""


def make_worker(
    state: State,
    queue: Queue,
    connection: redis.Redis,
    *,
    simple: bool = False,
    extra_queues: t.Sequence[Queue] = (),
) -> RecoveringWorker | RecoveringSimpleWorker:
    """A worker on ``queue`` (then ``extra_queues``, taken only when ``queue``
    is empty) whose idle wait ends every ``RECOVERY_INTERVAL``."""
    interval = state.config.recovery_interval
    # RQ blocks on the queue for ``worker_ttl - 15`` seconds at a time.
    ttl = max(16, math.ceil(interval) + 15)
    worker_class = RecoveringSimpleWorker if simple else RecoveringWorker
    rq_worker = worker_class(
        [queue, *extra_queues], connection=connection, worker_ttl=ttl
    )
    rq_worker.setup_recovery(state, queue)
    return rq_worker
