"""The backfill's recording as RQ jobs (the settings page's *Start backfill*).

The job reads the host's source for about :data:`JOB_BUDGET` seconds, then
queues the next job, which resumes at the cursor: live jobs, taken first by
the workers, run in between. Jobs go to the backfill queue.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import typing as t

from ..state import get_state
from ..state import job_app
from ..tables.base import utcnow
from . import backfill_send
from . import kick
from .backfill import Backfill
from .backfill import BackfillError
from .backfill import Progress
from .backfill import as_aware
from .backfill import iso_time
from .backfill import lock_key
from .backfill import parse_time
from .settings import load as load_settings

if t.TYPE_CHECKING:
    from ..state import State

logger = logging.getLogger("flask_refiner_segment")

RECORD_JOB = "flask_refiner_segment.outbound.backfill_jobs.record_job"
#: Time budget of one recording job (s); the next job resumes at the cursor.
JOB_BUDGET = 2.0


def status(state: State, workspace_id: str) -> dict[str, t.Any]:
    """The workspace's backfill for people: its progress and how many of its
    deliveries wait to be sent."""
    p = Progress.load(state, workspace_id)
    return {
        **dataclasses.asdict(p),
        "waiting": backfill_send.waiting(state, workspace_id),
    }


def start_job(
    state: State,
    workspace_id: str,
    since: dt.datetime,
    *,
    survey_id: str | None = None,
    rate: int | None = None,
) -> None:
    """Queue the recording on the backfill queue (the settings page's button).

    :raise BackfillError: as :class:`Backfill` would, checked now.
    """
    if state.hooks.completion_source is None:
        raise BackfillError(
            "No completion source is registered: decorate a function with"
            " @refiner_segment.completion_source (README: Backfill)."
        )
    current = load_settings(state, workspace_id, fresh=True)
    if not current.sendable:
        raise BackfillError(
            f"Workspace {workspace_id!r} cannot send: {current.skip_reason(None)}."
        )
    if state.redis.exists(lock_key(workspace_id)):
        raise BackfillError("A backfill of this workspace is running.")
    since_text = iso_time(as_aware(since))
    backfill_send.make_queue(state).enqueue(
        RECORD_JOB,
        workspace_id,
        since_text,
        survey_id,
        rate,
        None,
        **kick.job_options(state),
    )
    # Shown as started at once, before a worker takes the job.
    Progress(
        status="queued",
        since=since_text,
        survey_id=survey_id or "",
        started_at=iso_time(utcnow()),
    ).save(state, workspace_id)


def record_job(
    workspace_id: str,
    since: str,
    survey_id: str | None,
    rate: int | None,
    run_id: str | None,
) -> dict[str, int]:
    """RQ job: record for up to :data:`JOB_BUDGET` seconds, then queue the next
    job to go on at the cursor (live jobs run in between). A source that does
    not yield oldest first cannot be resumed: then one job reads it all."""
    with job_app().app_context():
        state = get_state()
        try:
            run = Backfill(
                state,
                workspace_id,
                parse_time(since),
                survey_id=survey_id,
                rate=rate,
                run_id=run_id,
            )
        except BackfillError as exc:
            logger.error("Backfill of workspace %r not started: %s", workspace_id, exc)
            failed = Progress.load(state, workspace_id)
            # Never over the progress of another run (the CLI's, say).
            if failed.status == "queued" or failed.run_id == (run_id or "-"):
                failed.status, failed.error = "failed", str(exc)
                failed.save(state, workspace_id)
            return {}
        deadline = time.monotonic() + JOB_BUDGET
        try:
            for item in run.completions():
                run.process(item)
                if time.monotonic() > deadline and run.progress.ordered:
                    run.pause()
                    backfill_send.make_queue(state).enqueue(
                        RECORD_JOB,
                        workspace_id,
                        since,
                        survey_id,
                        rate,
                        run.run_id,
                        **kick.job_options(state),
                    )
                    return run.progress.counts()
        except Exception as exc:
            run.finish("failed", f"{type(exc).__name__}: {exc}"[:500])
            raise
        return run.finish().counts()
