"""The settings page's backfill: *Start backfill* (the last N days) and its progress."""

from __future__ import annotations

import datetime as dt
import logging
import typing as t

import redis
from flask import Blueprint
from flask import flash
from flask import redirect
from flask import url_for

from ..outbound import backfill_jobs
from ..outbound.backfill import BackfillError
from ..state import get_state
from .forms import BackfillForm

if t.TYPE_CHECKING:
    from ..state import State

logger = logging.getLogger("flask_refiner_segment")


def register_backfill(
    bp: Blueprint,
    render: t.Callable[..., t.Any],
    refuse: t.Callable[[State, str], t.Any],
    csrf_errors: t.Callable[[t.Any], list[str]],
) -> None:
    """Add ``POST /backfill`` to the settings blueprint."""

    @bp.post("/backfill")
    def backfill() -> t.Any:
        state = get_state()
        ws = state.current_workspace()
        form = BackfillForm()
        if not form.validate():
            if csrf_errors(form):
                return refuse(state, ws)
            return render(state, ws, backfill_form=form), 400
        days = int(form.days.data)
        since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
        try:
            backfill_jobs.start_job(state, ws, since)
        except BackfillError as exc:
            flash(f"Backfill not started: {exc}", "error")
        except redis.RedisError:
            flash("Backfill not started: Redis is unavailable.", "error")
        else:
            logger.info("Backfill of workspace %r queued (%d days).", ws, days)
            flash(
                f"Backfill of the last {days} days started: past completions are"
                " sent after the live ones.",
                "success",
            )
        return redirect(url_for(".settings"))


def status(state: State, ws: str) -> dict[str, t.Any] | None:
    """The workspace's backfill progress, ``None`` when Redis is unavailable."""
    try:
        return backfill_jobs.status(state, ws)
    except redis.RedisError:
        logger.warning("Could not read the backfill's progress.", exc_info=True)
        return None
