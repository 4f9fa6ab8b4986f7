"""The Redis fallback: completions the database refused, waiting to be recorded.

A durable Redis list (no TTL) of sealed completions: each item is
``{"workspace_id": ..., "sealed": ...}`` where ``sealed`` is the delivery row
encrypted with the app's secret box, so personal data is never in clear in
Redis. Items are drained into the database oldest first and leave the list only
after the database took them (``LRANGE`` a chunk, record each item, then
``LREM`` it by value): two drainers at once record an item twice at worst, which
the dedupe against the response's latest content makes a no-op.
"""

from __future__ import annotations

import json
import logging
import typing as t

from ..crypto import SecretUnavailable
from ..tables import outbound as models
from ..tables.base import utcnow
from . import record
from . import settings

if t.TYPE_CHECKING:
    import redis

    from ..state import State

logger = logging.getLogger("flask_refiner_segment")

#: The list of sealed completions.
KEY = "refiner_segment:fallback"
#: Items that could not be opened (e.g. the encryption key changed), kept aside.
UNREADABLE_KEY = "refiner_segment:fallback-unreadable"
#: Items recorded per ``LRANGE``.
CHUNK = 100


def push(state: State, row: dict[str, t.Any], *, check_settings: bool) -> None:
    """Append a completion to the list; ``check_settings``: the skip reasons
    (no write key, disabled, survey not selected) are decided when recorded.

    :raise redis.RedisError: Redis is unavailable too.
    """
    sealed = state.box.encrypt(
        json.dumps(
            {
                **row,
                "received_at": utcnow().isoformat(),
                "check_settings": check_settings,
            }
        )
    )
    item = json.dumps({"workspace_id": row["workspace_id"], "sealed": sealed})
    state.redis.rpush(KEY, item)


def length(connection: redis.Redis) -> int:
    """How many completions wait in the list."""
    return int(connection.llen(KEY))


def drain(state: State) -> tuple[int, set[str]]:
    """Record every waiting completion: ``(deliveries inserted, their workspaces)``.

    :raise sqlalchemy.exc.SQLAlchemyError: the database refused (the items not
        recorded yet stay in the list).
    :raise redis.RedisError: Redis is unavailable.
    """
    connection = state.redis
    inserted = 0
    workspaces: set[str] = set()
    while True:
        items: list[t.Any] = connection.lrange(KEY, 0, CHUNK - 1)
        if not items:
            return inserted, workspaces
        for item in items:
            row = _open(state, item)
            if row is not None and record_row(state, row):
                inserted += 1
                workspaces.add(row["workspace_id"])
            connection.lrem(KEY, 1, item)


def record_row(state: State, row: dict[str, t.Any]) -> bool:
    """Record one completion that came through Redis; ``True`` when a pending
    delivery was inserted.

    :raise sqlalchemy.exc.SQLAlchemyError: the database refused.
    """
    if row.pop("lifecycle", False):  # a survey_shown / survey_dismissed event
        if row.pop("check_settings", False):
            loaded = settings.load(state, row["workspace_id"])
            if not loaded.lifecycle_events or loaded.skip_reason(row.get("survey_id")):
                return False
        record.insert_event(state, row)
        return True
    if row.pop("check_settings", False):
        loaded = settings.load(state, row["workspace_id"])
        reason = loaded.skip_reason(row.get("survey_id"))
        if reason is not None:
            logger.info("Completion %r not sent: %s.", row["response_id"], reason)
            keys = ("workspace_id", "response_id", "survey_id", "user_id")
            base = {k: row.get(k) for k in keys}
            record.insert_unsent(state, base, models.SKIPPED, reason)
            return False
    return record.insert_pending(state, row)


def _open(state: State, item: t.Any) -> dict[str, t.Any] | None:
    try:
        envelope = json.loads(item)
        return t.cast(
            dict[str, t.Any], json.loads(state.box.decrypt(envelope["sealed"]))
        )
    except (ValueError, KeyError, TypeError, SecretUnavailable) as exc:
        logger.error(
            "A completion in the Redis fallback cannot be opened (%s); moved to %s.",
            type(exc).__name__,
            UNREADABLE_KEY,
        )
        pipe = state.redis.pipeline(transaction=True)
        pipe.rpush(UNREADABLE_KEY, item)
        pipe.lrem(KEY, 1, item)
        pipe.execute()
        return None
