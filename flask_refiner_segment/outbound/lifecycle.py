"""The ``survey_shown`` / ``survey_dismissed`` receivers: record a pending
delivery of one ``Survey Shown`` / ``Survey Dismissed`` track and kick a drain.

The same durable pipeline as completions (:mod:`.receiver`): inside a host
transaction that wrote, the delivery joins it and the kick follows the commit;
when the database refuses, the event waits in the Redis fallback. Off by
default: a workspace sends them only once its settings turn them on; until
then, and while it could not send anyway, the signals are ignored (not logged
as skipped deliveries, which would fill the log with every page view).
"""

from __future__ import annotations

import logging
import typing as t
from collections.abc import Mapping

import sqlalchemy as sa

from ..core.completion import InvalidCompletion
from ..core.completion import canonical_json
from ..core.lifecycle import DISMISSED
from ..core.lifecycle import SHOWN
from ..core.lifecycle import normalize_event
from . import fallback
from . import hosttx
from . import kick
from . import record
from . import settings

if t.TYPE_CHECKING:
    from ..state import State

logger = logging.getLogger("flask_refiner_segment")

__all__ = ["DISMISSED", "SHOWN", "receive"]


def receive(state: State, kind: str, kwargs: Mapping[str, t.Any]) -> bool:
    """Handle one lifecycle signal; ``True`` when a delivery was recorded (or
    kept in the Redis fallback). Never raises."""
    try:
        return _receive(state, kind, kwargs)
    except Exception:
        logger.exception("Could not record a %s signal.", kind)
        return False


def _receive(state: State, kind: str, kwargs: Mapping[str, t.Any]) -> bool:
    workspace_id = state.workspace(kwargs.get("workspace_id"))
    try:
        event = normalize_event(
            kind,
            user_id=kwargs.get("user_id"),
            survey=kwargs.get("survey"),
            at=kwargs.get("at"),
            event_id=kwargs.get("id"),
        )
    except InvalidCompletion as exc:
        logger.warning("A %s signal was ignored: %s.", kind, exc)
        return False
    row = {
        "workspace_id": workspace_id,
        "survey_id": event["survey"]["id"][:255],
        "user_id": event["user_id"][:255],
        "payload": canonical_json(event),
    }
    try:
        current = settings.load(state, workspace_id)
    except sa.exc.SQLAlchemyError as exc:  # decided when recorded from Redis
        return _fallback(state, row, exc, check_settings=True)
    if not current.lifecycle_events or current.skip_reason(row["survey_id"]):
        logger.debug("A %s signal was ignored: not sent for this survey.", kind)
        return False
    try:
        connection = hosttx.host_connection(state)
        record.insert_event(state, row, connection=connection)
    except sa.exc.SQLAlchemyError as exc:
        return _fallback(state, row, exc, check_settings=False)
    if connection is None:
        kick.kick(state, workspace_id, reuse=True)
    else:
        hosttx.kick_after_commit(state, workspace_id)
    return True


def _fallback(
    state: State, row: dict[str, t.Any], exc: Exception, *, check_settings: bool
) -> bool:
    try:
        fallback.push(state, {**row, "lifecycle": True}, check_settings=check_settings)
        kick.kick_fallback(state)
    except Exception as redis_exc:
        logger.error(
            "LOST a survey lifecycle event: database (%s) and Redis (%s) both"
            " unavailable.",
            type(exc).__name__,
            type(redis_exc).__name__,
        )
        return False
    logger.warning(
        "Database unavailable (%s); a survey lifecycle event was kept in Redis.",
        type(exc).__name__,
    )
    return True
