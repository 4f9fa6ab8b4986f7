"""The ``survey_completed`` receiver: validate, record durably, kick a drain job.

It runs on the host's request path, so it does as little as possible: no call to
Segment, nothing on the host's ``db.session`` (it uses its own short transaction
on ``db.engine``), one ``INSERT`` and one Redis ``SET NX``. It never raises into
the host.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import typing as t
from collections.abc import Mapping

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from . import models
from . import queue as _queue
from . import workspaces
from .extension import EXTENSION_KEY
from .payload import InvalidCompletion
from .payload import completion_nps_score
from .payload import normalize_completion

if t.TYPE_CHECKING:
    from .extension import RefinerSegment
    from .extension import _State

logger = logging.getLogger("flask_refiner_segment")


def canonical_json(value: t.Any) -> str:
    """The encoding stored in ``Delivery.payload`` and hashed for deduplication."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def receive(ext: RefinerSegment, kwargs: Mapping[str, t.Any]) -> None:
    """Handle one ``survey_completed`` signal; never raises."""
    try:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    except RuntimeError:
        logger.error("survey_completed was sent outside an app context; ignored.")
        return
    state: _State | None = app.extensions.get(EXTENSION_KEY)
    if state is None or state.ext is not ext:
        return
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


def _receive(state: _State, kwargs: Mapping[str, t.Any]) -> None:
    workspace_id = str(kwargs.get("workspace_id") or state.config.default_workspace)
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
    settings = workspaces.load(state, workspace_id)
    reason = settings.skip_reason(survey_id)
    if reason is not None:
        _skip(state, base, models.SKIPPED, reason)
        return
    payload = canonical_json(completion)
    nps = completion_nps_score(completion)
    record(state, {**base, "payload": payload, "nps_score": nps})


def record(state: _State, row: dict[str, t.Any], *, fallback: bool = True) -> bool:
    """Insert a pending delivery and kick a drain; ``False`` for a duplicate.

    When the database refuses, the completion travels through Redis instead (a
    ``record_completion`` job inserts it later); only when both are down is it
    lost, and then it is logged as an error with its response id.
    """
    now = models.utcnow()
    values = {
        **row,
        "content_hash": hashlib.sha256(row["payload"].encode()).hexdigest(),
        "status": models.PENDING,
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        "next_attempt_at": now,
        "retry_until": now + dt.timedelta(seconds=state.config.retry_window),
    }
    try:
        inserted = _insert_pending(state, values)
    except sa.exc.SQLAlchemyError as exc:
        if not fallback:
            raise
        _fallback_to_redis(state, row, exc)
        return False
    if inserted:
        _queue.kick(state, row["workspace_id"], reuse=True)
    else:
        logger.debug(
            "Response %r was already recorded with this content.", row["response_id"]
        )
    return inserted


def _insert_pending(state: _State, values: dict[str, t.Any]) -> bool:
    """One ``INSERT .. ON CONFLICT DO NOTHING`` in autocommit mode.

    A single statement is atomic and durable on its own; autocommit spares the
    ``BEGIN`` and ``COMMIT`` round trips, and the statement is built once.
    """
    engine, stmt = _insert_statement(state)
    try:
        with engine.connect() as conn:
            return bool(conn.execute(stmt, values).rowcount)
    except IntegrityError:  # dialects without ON CONFLICT
        return False


def _insert_statement(state: _State) -> tuple[sa.Engine, t.Any]:
    # Per process: a forked worker must not share its parent's pool.
    key = f"insert_pending:{os.getpid()}"
    cached = state.cache.get(key)
    if cached is not None:
        return t.cast("tuple[sa.Engine, t.Any]", cached)
    table = state.models.Delivery.__table__
    engine = state.db.engine.execution_options(isolation_level="AUTOCOMMIT")
    dialect = engine.dialect.name
    stmt: t.Any = table.insert()
    if dialect in ("postgresql", "sqlite"):
        stmt = (
            postgresql.insert(table)
            if dialect == "postgresql"
            else sqlite.insert(table)
        ).on_conflict_do_nothing(
            index_elements=["workspace_id", "response_id", "content_hash"]
        )
    state.cache[key] = (engine, stmt)
    return engine, stmt


def _fallback_to_redis(state: _State, row: dict[str, t.Any], exc: Exception) -> None:
    from .jobs import record_completion

    try:
        state.queue.enqueue(
            record_completion,
            row["workspace_id"],
            row["response_id"],
            row["survey_id"],
            row["user_id"],
            row["payload"],
            **_queue._job_options(state),
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


def _skip(state: _State, base: dict[str, t.Any], status: str, reason: str) -> None:
    """Record a completion that is not sent, with the reason."""
    log = logger.warning if status == models.FAILED else logger.info
    log("Survey completion %r not sent: %s.", base["response_id"], reason)
    now = models.utcnow()
    try:
        with state.db.engine.begin() as conn:
            conn.execute(
                state.models.Delivery.__table__.insert().values(
                    **base,
                    status=status,
                    reason=reason,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
            )
    except sa.exc.SQLAlchemyError:
        logger.exception("Could not record skipped completion %r.", base["response_id"])


def _log_conversion(state: _State, type_name: str) -> None:
    if type_name not in state.converted_types:
        state.converted_types.add(type_name)
        logger.warning(
            "Survey values of type %s are not JSON types; they are sent as str().",
            type_name,
        )
