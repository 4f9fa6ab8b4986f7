"""The ready set and the serve slots in Redis: which workspaces wait for a
turn (and since when), and which serve jobs are queued or running.

A workspace's kick key is held from the kick that put it in the ready set
until its turn ends (:func:`end_turn`); serve slot ``n``'s key while serve
job ``n`` is queued or running. Each step is one round trip (a Lua script
where it reads and writes).
"""

from __future__ import annotations

import time
import typing as t

if t.TYPE_CHECKING:
    import redis

    from ..state import State

KEY_PREFIX = "refiner_segment:"


def kick_key(workspace_id: str) -> str:
    return f"{KEY_PREFIX}kick:{workspace_id}"


def serve_key(slot: int) -> str:
    """Held while serve job number ``slot`` is queued or running."""
    return f"{KEY_PREFIX}serve:{slot}"


#: The ready set: workspace → when its next turn is due (seconds since the epoch).
READY_KEY = KEY_PREFIX + "ready"
#: Take up to ARGV[2] workspaces due by ARGV[1] off the ready set, earliest
#: first; returns how many due ones are left, then the workspaces taken.
_POP = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
local left = redis.call('ZCOUNT', KEYS[1], '-inf', ARGV[1])
table.insert(due, 1, left)
return due
"""

#: A turn ends with nothing left due: delete the kick key when nobody but its
#: creator counted on it (returns 0); otherwise reset the count and put the
#: workspace back in the ready set for a last look at ARGV[3] (returns 1).
_END_TURN = """
local value = redis.call('GET', KEYS[1])
local count = tonumber(value)
if value and count and count <= 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
local due = redis.call('ZSCORE', KEYS[2], ARGV[2])
if (not due) or tonumber(due) > tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
end
return 1
"""


#: Add ARGV[1] to the ready set due at ARGV[2] unless it is due earlier.
_READY = """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not due) or tonumber(due) > tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
return 1
"""


def script(connection: redis.Redis, source: str) -> t.Any:
    """A Lua script on ``connection`` (``EVALSHA``; loaded on first use)."""
    return connection.register_script(source)


def add(connection: redis.Redis, workspace_id: str, when: float) -> None:
    """Put a workspace whose kick key is held in the ready set, due at
    ``when`` (seconds since the epoch); an earlier due time stays."""
    script(connection, _READY)(keys=[READY_KEY], args=[workspace_id, repr(when)])


def pop(connection: redis.Redis, n: int) -> tuple[list[str], int]:
    """Take up to ``n`` due workspaces off the ready set, earliest first;
    returns them and how many due ones are left."""
    left, *taken = script(connection, _POP)(
        keys=[READY_KEY], args=[repr(time.time()), n]
    )
    return [w.decode() if isinstance(w, bytes) else str(w) for w in taken], int(left)


def due_within(connection: redis.Redis, seconds: float) -> float | None:
    """Seconds until the earliest turn in the ready set when it is due within
    ``seconds`` (0 when due), else ``None``."""
    now = time.time()
    first = connection.zrangebyscore(
        READY_KEY, "-inf", now + seconds, start=0, num=1, withscores=True
    )
    return max(0.0, float(first[0][1]) - now) if first else None


def end_turn(state: State, connection: redis.Redis, workspace_id: str) -> bool:
    """A workspace's turn found nothing more due: delete its kick key, or,
    when a process other than its creator counted on it (and may skip kicks
    for ``KICK_CACHE_SECONDS``), keep it and give the workspace a last look
    then (``True``; at least ``BATCH_LINGER`` later, so that a batch fills up
    under steady load)."""
    return bool(
        script(connection, _END_TURN)(
            keys=[kick_key(workspace_id), READY_KEY],
            args=_end_turn_args(state, workspace_id, time.time()),
        )
    )


def _end_turn_args(state: State, workspace_id: str, now: float) -> list[t.Any]:
    config = state.config
    delay = max(config.kick_cache_seconds, config.batch_linger)
    return [int(config.kick_ttl * 1000), workspace_id, repr(now + delay)]


def after_turns(
    state: State,
    connection: redis.Redis,
    ended: t.Sequence[str],
    waiting: t.Sequence[str],
) -> None:
    """Many turns at once, in one round trip: :func:`end_turn` for ``ended``,
    :func:`add` (due now, behind the others) for ``waiting``."""
    if not ended and not waiting:
        return
    now = time.time()
    end, ready = script(connection, _END_TURN), script(connection, _READY)
    with connection.pipeline(transaction=False) as pipe:
        for ws in ended:
            end(
                keys=[kick_key(ws), READY_KEY],
                args=_end_turn_args(state, ws, now),
                client=pipe,
            )
        for ws in waiting:
            ready(keys=[READY_KEY], args=[ws, repr(now)], client=pipe)
        pipe.execute()


def keep_kicks(
    state: State, connection: redis.Redis, workspace_ids: t.Sequence[str]
) -> None:
    """Extend the kick keys of workspaces whose turn goes on to ``KICK_TTL``
    from now, in one round trip (see :func:`.kick.keep_kick`)."""
    with connection.pipeline(transaction=False) as pipe:
        for ws in workspace_ids:
            pipe.pexpire(kick_key(ws), int(state.config.kick_ttl * 1000))
        pipe.execute()


def take_slot(state: State, connection: redis.Redis, slot: int) -> bool:
    """Take serve slot ``slot`` for ``KICK_TTL`` (kept alive by its job)."""
    ttl = int(state.config.kick_ttl * 1000)
    return bool(connection.set(serve_key(slot), b"1", nx=True, px=ttl))


def keep_slot(state: State, connection: redis.Redis, slot: int) -> None:
    connection.set(serve_key(slot), b"1", px=int(state.config.kick_ttl * 1000))


def leave_slot(state: State, connection: redis.Redis, slot: int, idle: float) -> bool:
    """A serve job with nothing due within ``idle`` seconds stops: release its
    slot; ``True`` when a turn came due meanwhile and the job took the slot
    back (it goes on). A kick that found the slot taken put its workspace in
    the ready set before the release, so that look sees it."""
    connection.delete(serve_key(slot))
    if due_within(connection, idle) is None:
        return False
    return take_slot(state, connection, slot)
