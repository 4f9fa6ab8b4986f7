"""RQ jobs. Module-level functions with primitive arguments only (no secrets).

They are enqueued by dotted path (:data:`.kick.DELIVER_JOB`, ...) and need the
Flask app context, which ``flask refiner-segment worker`` provides; each job
pushes a fresh context of that app, so it gets its own ``db.session``.
"""

from __future__ import annotations

import json
import typing as t

import sqlalchemy as sa
from rq import Queue
from rq import get_current_job

from ..core.completion import completion_nps_score
from ..state import State
from ..state import get_state
from ..state import job_app
from . import backfill_send
from . import fallback
from . import kick
from . import retention
from .drain import Drain
from .serve import Server


def _job_queue(state: State) -> Queue:
    job = get_current_job()
    if job is not None:
        return kick.make_queue(state.config, job.connection)
    return state.queue


def serve(slot: int = 0) -> dict[str, int]:
    """Take turns of the due workspaces until none is due (see :mod:`.serve`).

    ``slot``: the serve slot whose key the kick (or another serve job) took.
    """
    with job_app().app_context():
        state = get_state()
        return Server(state, _job_queue(state), slot).run()


def deliver(workspace_id: str, *, scheduled: bool = False) -> dict[str, int]:
    """A workspace's turn now, then every due workspace's (a serve job).

    ``scheduled``: a retry enqueued for when a backoff ends, which did not
    create the workspace's kick key. Without it, a job queued by a kick of an
    earlier version (one job per workspace), whose key is held.
    """
    with job_app().app_context():
        state = get_state()
        return Drain(state, workspace_id, _job_queue(state), scheduled=scheduled).run()


def drain_fallback() -> int:
    """Record the completions waiting in the Redis fallback (the database
    refused them); a database error fails the job and leaves them waiting."""
    with job_app().app_context():
        return kick.drain_fallback(get_state())


def record_completion(workspace_id: str, sealed: str, *legacy: t.Any) -> bool:
    """Record a completion queued as a job by an earlier version.

    ``sealed`` is the delivery row, encrypted with the app's secret box (jobs
    queued by 0.1 carry ``response_id, survey_id, user_id, payload`` instead).
    When the database refuses, the completion moves to the Redis fallback list,
    which never gives up.
    """
    with job_app().app_context():
        state = get_state()
        if legacy:
            response_id, survey_id, user_id, payload = (sealed, *legacy)
            row = {
                "workspace_id": workspace_id,
                "response_id": response_id,
                "survey_id": survey_id,
                "user_id": user_id,
                "payload": payload,
                "nps_score": completion_nps_score(json.loads(payload)),
            }
        else:
            row = json.loads(state.box.decrypt(sealed))
        try:
            inserted = fallback.record_row(state, row)
        except sa.exc.SQLAlchemyError:
            fallback.push(state, row, check_settings=False)
            kick.kick_fallback(state)
            return False
        if inserted:
            kick.kick(state, workspace_id)
        return inserted


def sweep() -> dict[str, int]:
    """Periodic recovery: release expired leases, kick workspaces, reschedule;
    then prune a bounded share of the deliveries past their retention and
    restart the send chains of backfills whose chain was lost."""
    with job_app().app_context():
        state = get_state()
        try:
            result = kick.requeue(state, reset_kicks=False)
        finally:
            # Even when the database is down: the next sweep must come.
            kick.schedule_sweep(state, _job_queue(state), force=True)
        result["pruned"] = retention.prune_some(state).total
        result["backfills"] = backfill_send.resume(state)
        return result
