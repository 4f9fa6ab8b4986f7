"""Redis and RQ: the connection, the queue, and the whole kick protocol.

A *kick* puts a workspace in the *ready* set (a sorted set: workspace → when
its turn is due) and makes sure a *serve* job runs; serve jobs (any number, on
any worker) take turns of the due workspaces (:mod:`.serve`). A workspace's
kick key lives while it waits in the ready set or has its turn, so kicks
meanwhile cost one round trip and queue nothing. A *retry* schedules a
``deliver`` job for when a backoff ends; the *sweep* is the periodic recovery
job. Jobs are enqueued by dotted path, so nothing here imports :mod:`.jobs`.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
import typing as t

import redis
from rq import Queue
from rq import Retry
from rq.scheduler import RQScheduler

from . import fallback
from . import outbox
from . import ready
from .ready import KEY_PREFIX
from .ready import kick_key

if t.TYPE_CHECKING:
    from ..config import Config
    from ..state import State

logger = logging.getLogger("flask_refiner_segment")


def retry_key(workspace_id: str) -> str:
    return f"{KEY_PREFIX}retry-at:{workspace_id}"


SWEEP_KEY = KEY_PREFIX + "sweep"
#: Set while a job to drain the Redis fallback is queued (or failed lately).
FALLBACK_KICK_KEY = KEY_PREFIX + "fallback-kick"
RECOVERY_KEY = KEY_PREFIX + "recovery"

#: The RQ jobs, by dotted path.
DELIVER_JOB = "flask_refiner_segment.outbound.jobs.deliver"
SERVE_JOB = "flask_refiner_segment.outbound.jobs.serve"
RECORD_JOB = "flask_refiner_segment.outbound.jobs.record_completion"
SWEEP_JOB = "flask_refiner_segment.outbound.jobs.sweep"
FALLBACK_JOB = "flask_refiner_segment.outbound.jobs.drain_fallback"


def connect(url: str, socket_timeout: float | None) -> redis.Redis:
    """A client for ``url``; the request path uses short timeouts."""
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=socket_timeout,
        socket_timeout=socket_timeout,
    )


def make_queue(config: Config, connection: redis.Redis) -> Queue:
    """The extension's RQ queue on ``connection``."""
    return Queue(
        config.queue, connection=connection, default_timeout=config.job_timeout
    )


def job_options(state: State) -> dict[str, t.Any]:
    return {
        "job_timeout": state.config.job_timeout,
        "result_ttl": 60,
        "failure_ttl": 7 * 24 * 3600,
        "retry": Retry(
            max=len(state.config.job_retry_intervals),
            interval=list(state.config.job_retry_intervals),
        ),
    }


#: Kick: create the workspace's kick key (``SET NX``) and count the caller
#: (``INCR``); the creator puts the workspace in the ready set, due now (an
#: earlier due time stays), and takes serve slot 0 when free. Returns 0 (the
#: key was taken), 1 (created; a serve job is queued or running) or 2
#: (created; the caller enqueues serve job 0).
_KICK = """
local created = redis.call('SET', KEYS[1], '0', 'NX', 'PX', ARGV[1])
redis.call('INCR', KEYS[1])
if not created then return 0 end
local due = redis.call('ZSCORE', KEYS[2], ARGV[2])
if (not due) or tonumber(due) > tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
end
if redis.call('SET', KEYS[3], '0', 'NX', 'PX', ARGV[1]) then return 2 end
return 1
"""


def kick(state: State, workspace_id: str, *, reuse: bool = False) -> bool:
    """Make sure ``workspace_id`` gets a turn soon: in the ready set, a serve
    job queued or running.

    One round trip (a Lua script): ``SET NX`` of the workspace's kick key and
    ``INCR`` of it; the caller that created the key puts the workspace in the
    ready set and, when no serve job holds slot 0, enqueues one. The key
    stays while the workspace waits and has its turn; the turn ends by
    deleting it, or, when another process counted on it, by a last look
    ``KICK_CACHE_SECONDS`` later, so a completion committed before a failed
    ``SET NX`` is seen. With ``reuse`` (the request path) a process that found
    the key taken skips Redis for ``KICK_CACHE_SECONDS``. Returns ``False``
    when Redis is unreachable: the delivery is already in the database and the
    next sweep or ``requeue`` picks it up.
    """
    seen: dict[str, float] = state.local("kick_seen", dict)
    now = time.monotonic()
    if reuse and seen.get(workspace_id, 0.0) > now:
        return True
    key = kick_key(workspace_id)
    try:
        ttl = int(state.config.kick_ttl * 1000)
        created = ready.script(state.redis, _KICK)(
            keys=[key, ready.READY_KEY, ready.serve_key(0)],
            args=[ttl, workspace_id, repr(time.time())],
        )
        if created == 2:
            try:
                enqueue_serve(state, state.queue, 0)
            except Exception:
                state.redis.delete(key, ready.serve_key(0))
                raise
        elif not created:
            # ``now`` was taken before the key was seen: the window ends no
            # later than KICK_CACHE_SECONDS after the key existed.
            seen[workspace_id] = now + state.config.kick_cache_seconds
        return True
    except redis.RedisError as exc:
        logger.warning(
            "Redis unavailable (%s); workspace %r will be delivered by the next"
            " sweep or `flask refiner-segment requeue`.",
            type(exc).__name__,
            workspace_id,
        )
        return False


def keep_kick(state: State, connection: redis.Redis, workspace_id: str) -> None:
    """Extend the kick key's life to ``KICK_TTL`` from now (a drain job calls
    this as it goes): while the job drains, completions queue no other job,
    and once it stops (or dies) the key lives at most ``KICK_TTL`` more."""
    connection.pexpire(kick_key(workspace_id), int(state.config.kick_ttl * 1000))


def take_kick(state: State, connection: redis.Redis, workspace_id: str) -> bool:
    """Create the kick key for a drain job that was not kicked (a scheduled
    retry); ``False`` when another drain job is queued or running."""
    return bool(
        connection.set(
            kick_key(workspace_id),
            b"1",
            nx=True,
            px=int(state.config.kick_ttl * 1000),
        )
    )


def scheduler_active(connection: redis.Redis, queue_name: str) -> bool:
    """Whether an RQ scheduler holds the scheduling lock of ``queue_name``.

    RQ's scheduler (``rq worker --with-scheduler``, ``flask refiner-segment
    worker``) keeps ``rq:scheduler-lock:<queue>`` alive while it runs; without
    it, jobs enqueued for later (retries, the sweep) never run.
    """
    return bool(connection.exists(RQScheduler.get_locking_key(queue_name)))


def enqueue_serve(state: State, queue: Queue, slot: int) -> None:
    """Enqueue serve job ``slot`` (its key is already taken)."""
    queue.enqueue(SERVE_JOB, slot, **job_options(state))


def start_serve(state: State, queue: Queue, slot: int) -> bool:
    """Enqueue serve job ``slot`` unless one holds the slot."""
    if not ready.take_slot(state, queue.connection, slot):
        return False
    try:
        enqueue_serve(state, queue, slot)
    except Exception:
        queue.connection.delete(ready.serve_key(slot))
        raise
    return True


def schedule_retry(
    state: State, queue: Queue, workspace_id: str, when: dt.datetime
) -> None:
    """Schedule a drain at ``when`` (naive UTC) unless an earlier one is scheduled."""
    connection = queue.connection
    # RQ's scheduler works in whole seconds: round up, never run early.
    stamp = float(math.ceil(when.replace(tzinfo=dt.timezone.utc).timestamp()))
    current = connection.get(retry_key(workspace_id))
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    if current is not None and now <= float(current) <= stamp:
        return
    connection.set(
        retry_key(workspace_id), str(stamp), ex=max(1, int(stamp - now) + 60)
    )
    queue.enqueue_at(
        dt.datetime.fromtimestamp(stamp, dt.timezone.utc),
        DELIVER_JOB,
        workspace_id,
        scheduled=True,
        **job_options(state),
    )
    if not scheduler_active(connection, queue.name):
        logger.warning(
            "No RQ scheduler is running for queue %r: the retry of workspace %r"
            " due at %s runs only when a `flask refiner-segment worker` polls"
            " (every %g s) or the next completion arrives. Run workers with"
            " `flask refiner-segment worker` or `rq worker --with-scheduler`.",
            queue.name,
            workspace_id,
            dt.datetime.fromtimestamp(stamp, dt.timezone.utc).isoformat(),
            state.config.recovery_interval,
        )


def schedule_sweep(state: State, queue: Queue, *, force: bool = False) -> bool:
    """Keep exactly one periodic sweep scheduled."""
    interval = state.config.sweep_interval
    if not queue.connection.set(
        SWEEP_KEY, b"1", nx=not force, ex=max(1, int(interval * 2))
    ):
        return False
    queue.enqueue_in(dt.timedelta(seconds=interval), SWEEP_JOB, **job_options(state))
    return True


def kick_fallback(state: State) -> None:
    """Make sure a job drains the Redis fallback soon.

    At most one such job per ``KICK_TTL`` while the database stays down (each
    fails, and the completions wait in the list for the sweep, ``requeue`` or
    the next worker start); a job that drained the list clears the key.

    :raise redis.RedisError: Redis is unavailable.
    """
    ttl = int(state.config.kick_ttl * 1000)
    if state.redis.set(FALLBACK_KICK_KEY, b"1", nx=True, px=ttl):
        try:
            options = {**job_options(state), "retry": None}
            state.queue.enqueue(FALLBACK_JOB, **options)
        except Exception:
            state.redis.delete(FALLBACK_KICK_KEY)
            raise


def drain_fallback(state: State) -> int:
    """Record the completions waiting in the Redis fallback and kick their
    workspaces; returns how many deliveries were inserted.

    :raise sqlalchemy.exc.SQLAlchemyError: the database refused; the
        completions not recorded yet stay in the list.
    """
    total = 0
    while True:
        inserted, workspaces = fallback.drain(state)
        total += inserted
        for workspace_id in workspaces:
            kick(state, workspace_id)
        state.redis.delete(FALLBACK_KICK_KEY)
        # A completion pushed while the key was set queued no job: look again.
        if not fallback.length(state.redis):
            return total


def requeue(
    state: State,
    *,
    force: bool = False,
    reset_kicks: bool = True,
    due_only: bool = False,
) -> dict[str, int]:
    """Recover deliveries whose job was lost, and make sure jobs will run.

    First the completions waiting in the Redis fallback are recorded. Then
    deliveries claimed by a worker that died (lease expired; with ``force`` every
    claimed one) go back to pending, and every workspace with pending
    deliveries (with ``due_only``, deliveries due now) is kicked.
    ``reset_kicks`` (an operator's ``requeue``, a worker starting) first deletes
    the workspaces' kick keys and serve slot 0, so a job is enqueued even if a
    lost one held them; the periodic sweep and poll keep them, so a workspace
    has one turn at a time (a lost job's keys expire within ``KICK_TTL``).
    Returns ``{"released": n, "workspaces": m}``.
    """
    recorded, _ = fallback.drain(state)
    state.redis.delete(FALLBACK_KICK_KEY)
    if recorded:
        logger.info("Recorded %d completions from the Redis fallback.", recorded)
    released, pending = outbox.release_stale(state, force=force, due_only=due_only)
    if reset_kicks:
        # And serve slot 0, which a lost serve job may hold: a kick queues one.
        state.redis.delete(ready.serve_key(0))
    for workspace_id in pending:
        if reset_kicks:
            state.redis.delete(kick_key(workspace_id))
        kick(state, workspace_id)
    return {"released": released, "workspaces": len(pending)}


def recover(state: State, queue: Queue) -> dict[str, int] | None:
    """A worker's periodic recovery, without RQ's scheduler: release expired
    leases, kick workspaces with due deliveries (backoffs that ended, retries
    whose job was lost) and keep the sweep scheduled.

    One worker's round per ``RECOVERY_INTERVAL`` is enough: the others skip
    theirs (``None``) while the round's key lives.
    """
    interval_ms = int(state.config.recovery_interval * 1000 * 0.8)
    if not queue.connection.set(RECOVERY_KEY, b"1", nx=True, px=max(1, interval_ms)):
        return None
    result = requeue(state, reset_kicks=False, due_only=True)
    if scheduler_active(queue.connection, queue.name):
        # Without a scheduler the sweep would never run (this poll stands in
        # for it) and each one scheduled would wait in RQ's registry.
        schedule_sweep(state, queue)
    return result


def retry_failed(state: State, workspace_id: str | None = None) -> int:
    """Give failed deliveries a new retry window and kick their workspaces."""
    n, workspace_ids = outbox.retry_failed(state, workspace_id)
    for ws in workspace_ids:
        kick(state, ws)
    return n
