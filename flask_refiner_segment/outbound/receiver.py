"""The ``survey_completed`` receiver: validate, record durably, kick a drain job.

It runs on the host's request path, so it does as little as possible: no call to
Segment, nothing on the host's ``db.session`` (it uses its own short transaction
on ``db.engine``), one ``INSERT`` and one Redis ``SET NX``. It never raises into
the host.
"""

from __future__ import annotations

import json
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


def _receive(state: State, kwargs: Mapping[str, t.Any]) -> None:
    workspace_id = state.workspace(kwargs.get("workspace_id"))
    response_id = _response_id(kwargs)
    survey_id = _survey_id(kwargs)
    user_id = kwargs.get("user_id")
    base = {
        "workspace_id": workspace_id,
        "response_id": response_id,
        "survey_id": survey_id,
        "user_id": None if user_id is None else str(user_id)[:255],
    }
    if user_id is None or user_id == "":
        _skip(
            state,
            base,
            models.SKIPPED,
            "no user_id: Segment cannot match the response to a profile",
        )
        return
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
        _skip(state, base, models.FAILED, f"invalid completion: {exc}")
        return
    reason = settings.load(state, workspace_id).skip_reason(survey_id)
    if reason is not None:
        _skip(state, base, models.SKIPPED, reason)
        return
    payload = canonical_json(completion)
    nps = completion_nps_score(completion)
    record_and_kick(state, {**base, "payload": payload, "nps_score": nps})


def record_and_kick(state: State, row: dict[str, t.Any]) -> bool:
    """Insert a pending delivery and kick a drain; ``False`` for a duplicate.

    When the database refuses, the completion travels through Redis instead (a
    ``record_completion`` job inserts it later); only when both are down is it
    lost, and then it is logged as an error with its response id.
    """
    try:
        inserted = record.insert_pending(state, row)
    except sa.exc.SQLAlchemyError as exc:
        _fallback_to_redis(state, row, exc)
        return False
    if inserted:
        kick.kick(state, row["workspace_id"], reuse=True)
    else:
        logger.debug(
            "Response %r was already recorded with this content.", row["response_id"]
        )
    return inserted


def _fallback_to_redis(state: State, row: dict[str, t.Any], exc: Exception) -> None:
    try:
        # The completion holds personal data: it travels encrypted, like the
        # write key at rest, and only the workspace id is in the clear.
        sealed = state.box.encrypt(json.dumps(row))
        state.queue.enqueue(
            kick.RECORD_JOB, row["workspace_id"], sealed, **kick.job_options(state)
        )
        logger.warning(
            "Database unavailable (%s); completion %r queued in Redis and will be"
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


def _skip(state: State, base: dict[str, t.Any], status: str, reason: str) -> None:
    """Record a completion that is not sent, with the reason."""
    log = logger.warning if status == models.FAILED else logger.info
    log("Survey completion %r not sent: %s.", base["response_id"], reason)
    try:
        record.insert_unsent(state, base, status, reason)
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
