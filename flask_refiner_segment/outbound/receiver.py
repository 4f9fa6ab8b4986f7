"""The ``survey_completed`` receiver: validate, record durably, kick a drain job.

It runs on the host's request path, so it does as little as possible: no call to
Segment, one statement (PostgreSQL; two on SQLite) and one Redis ``SET NX``.
Sent inside a host transaction that wrote, it records on that transaction's
connection in a SAVEPOINT (on PostgreSQL with psycopg 3 the SAVEPOINT, the
statement and the RELEASE are one round trip: :mod:`.pipelined`) and kicks
after the commit (:mod:`.hosttx`);
otherwise in a short transaction of its own on ``db.engine``. It never commits,
flushes or rolls back the host's ``db.session`` and never raises into the host.
"""

from __future__ import annotations

import logging
import typing as t
from collections.abc import Mapping

import sqlalchemy as sa

from ..core.completion import InvalidCompletion
from ..core.completion import canonical_json
from ..core.completion import completion_nps_score
from ..core.completion import normalize_completion
from ..state import State
from ..tables import outbound as models
from . import fallback
from . import hosttx
from . import kick
from . import record
from . import settings

logger = logging.getLogger("flask_refiner_segment")


def receive(state: State, kwargs: Mapping[str, t.Any]) -> None:
    """Handle one ``survey_completed`` signal for the app of ``state``; never raises."""
    try:
        _receive(state, kwargs)
    except Exception:
        logger.exception("Could not record survey completion %r.", _response_id(kwargs))


def _response_id(kwargs: Mapping[str, t.Any]) -> str | None:
    response = kwargs.get("response")
    rid = response.get("id") if isinstance(response, Mapping) else None
    return None if rid is None else str(rid)[:255]


def _survey_id(kwargs: Mapping[str, t.Any]) -> str | None:
    survey = kwargs.get("survey")
    sid = survey.get("id") if isinstance(survey, Mapping) else None
    return None if sid is None else str(sid)[:255]


class Prepared(t.NamedTuple):
    """A signal's arguments checked: the delivery ``row`` to record, or why
    not (``status``: skipped or failed, ``reason``) with the ids in ``base``."""

    base: dict[str, t.Any]
    row: dict[str, t.Any] | None
    status: str | None = None
    reason: str | None = None


def prepare(state: State, kwargs: Mapping[str, t.Any]) -> Prepared:
    """Normalize a ``survey_completed`` signal's arguments into the delivery row
    (the workspace's settings are not consulted here)."""
    workspace_id = state.workspace(kwargs.get("workspace_id"))
    user_id = kwargs.get("user_id")
    base = {
        "workspace_id": workspace_id,
        "response_id": _response_id(kwargs),
        "survey_id": _survey_id(kwargs),
        "user_id": None if user_id is None else str(user_id)[:255],
    }
    if user_id is None or user_id == "":
        return Prepared(
            base,
            None,
            models.SKIPPED,
            "no user_id: Segment cannot match the response to a profile",
        )
    try:
        completion = normalize_completion(
            user_id=user_id,
            survey=kwargs.get("survey"),
            response=kwargs.get("response"),
            account=kwargs.get("account"),
            user_traits=kwargs.get("user_traits"),
            on_convert=lambda name: _log_conversion(state, name),
        )
    except InvalidCompletion as exc:
        return Prepared(base, None, models.FAILED, f"invalid completion: {exc}")
    row = {
        **base,
        "payload": canonical_json(completion),
        "nps_score": completion_nps_score(completion),
        "answers": canonical_json(completion["response"]["answers"]),
    }
    return Prepared(base, row)


def _receive(state: State, kwargs: Mapping[str, t.Any]) -> None:
    try:
        connection = hosttx.host_connection(state)
    except sa.exc.SQLAlchemyError:
        connection = None  # our own transaction refuses too: the fallback
    prepared = prepare(state, kwargs)
    base, row = prepared.base, prepared.row
    if row is None:
        _skip(
            state, base, t.cast(str, prepared.status), str(prepared.reason), connection
        )
        return
    try:
        reason = settings.load(state, base["workspace_id"]).skip_reason(
            base["survey_id"]
        )
    except sa.exc.SQLAlchemyError as exc:
        # Settings unreadable: the worker decides the skip when it records it.
        _fallback_to_redis(state, row, exc, check_settings=True)
        return
    if reason is not None:
        _skip(state, base, models.SKIPPED, reason, connection)
        return
    record_and_kick(state, row, connection)


def record_and_kick(
    state: State, row: dict[str, t.Any], connection: sa.Connection | None = None
) -> bool:
    """Record a completion and kick a drain; ``False`` when its content is the
    response's latest recorded content already.

    With ``connection`` (the host's, in its transaction) the drain is kicked
    after the host's commit. When the database refuses, the completion goes to
    the Redis fallback list instead; only when both are down is it lost, and
    then it is logged as an error with its response id.
    """
    try:
        inserted = record.insert_pending(state, row, connection=connection)
    except sa.exc.SQLAlchemyError as exc:
        _fallback_to_redis(state, row, exc, check_settings=False)
        return False
    if not inserted:
        logger.debug(
            "Response %r was already recorded with this content.", row["response_id"]
        )
    elif connection is None:
        kick.kick(state, row["workspace_id"], reuse=True)
    else:
        hosttx.kick_after_commit(state, row["workspace_id"])
    return inserted


def _fallback_to_redis(
    state: State, row: dict[str, t.Any], exc: Exception, *, check_settings: bool
) -> None:
    try:
        # The completion holds personal data: it travels encrypted, like the
        # write key at rest, and only the workspace id is in the clear.
        fallback.push(state, row, check_settings=check_settings)
        logger.warning(
            "Database unavailable (%s); completion %r kept in Redis and will be"
            " recorded by the worker.",
            type(exc).__name__,
            row["response_id"],
        )
    except Exception as redis_exc:
        logger.error(
            "LOST survey completion %r: database (%s) and Redis (%s) both unavailable.",
            row["response_id"],
            type(exc).__name__,
            type(redis_exc).__name__,
        )
        return
    try:
        kick.kick_fallback(state)
    except Exception:  # the sweep, `requeue` or a worker start drains it
        logger.warning("Could not queue the drain of the Redis fallback.")


def _skip(
    state: State,
    base: dict[str, t.Any],
    status: str,
    reason: str,
    connection: sa.Connection | None,
) -> None:
    """Record a completion that is not sent, with the reason."""
    log = logger.warning if status == models.FAILED else logger.info
    log("Survey completion %r not sent: %s.", base["response_id"], reason)
    try:
        record.insert_unsent(state, base, status, reason, connection=connection)
    except sa.exc.SQLAlchemyError:
        logger.exception("Could not record skipped completion %r.", base["response_id"])


def _log_conversion(state: State, type_name: str) -> None:
    converted: set[str] = state.local("converted_types", set)
    if type_name not in converted:
        converted.add(type_name)
        logger.warning(
            "Survey values of type %s are not JSON types; they are sent as str().",
            type_name,
        )
