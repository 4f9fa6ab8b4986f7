"""The demo's past responses: collected before the Segment key was pasted.

On first start the app seeds ``HISTORY_SIZE`` responses spread over the last
60 days (not signalled: nothing was connected then). :func:`past_completions`
is the app's completion source, so ``flask refiner-segment backfill`` or the
settings page's *Start backfill* sends them.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa

from .surveys import SURVEYS
from .surveys import USERS
from .surveys import signal_questions

#: How many past responses the demo starts with.
HISTORY_SIZE = 36
_NPS_REASONS = ("Great support", "Too expensive", "Fast exports", "Missing SSO")
_ROLES = ("Engineer", "Product Manager", "Designer", "Other")


def seed_history(db: t.Any, response_model: t.Any) -> int:
    """Insert the past responses once (ids ``past-…``); returns how many."""
    exists = db.session.scalar(
        sa.select(sa.func.count()).where(response_model.id.like("past-%"))
    )
    if exists:
        return 0
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
    names = sorted(USERS)
    for n in range(HISTORY_SIZE):
        user = names[n % len(names)]
        if n % 2:
            survey_id = "nps-2026"
            answers: dict[str, t.Any] = {
                "how_likely": (n * 7) % 11,
                "why": _NPS_REASONS[n % len(_NPS_REASONS)],
            }
        else:
            survey_id = "product-feedback"
            answers = {
                "role": _ROLES[n % len(_ROLES)],
                "tools": ["Segment", "Jira"][: 1 + n % 2],
                "rating": 1 + n % 5,
                "Team Size": "11-50",
                "feedback": "",
            }
        db.session.add(
            response_model(
                id=f"past-{n:03d}",
                user_id=user,
                survey_id=survey_id,
                answers=answers,
                completed_at=now - dt.timedelta(days=60) * (1 - n / HISTORY_SIZE),
            )
        )
    db.session.commit()
    return HISTORY_SIZE


def completion(response: t.Any) -> dict[str, t.Any]:
    """The ``survey_completed`` keyword arguments of a stored response."""
    survey = SURVEYS[response.survey_id]
    user = USERS[response.user_id]
    return {
        "user_id": response.user_id,
        "survey": {
            "id": survey["id"],
            "name": survey["name"],
            "questions": signal_questions(survey),
        },
        "response": {
            "id": response.id,
            "completed_at": response.completed_at,
            "answers": response.answers,
        },
        "account": user["account"],
        "user_traits": {"email": user["email"], "name": user["name"]},
    }


def make_source(db: t.Any, response_model: t.Any) -> t.Callable[..., t.Any]:
    """The app's completion source: its stored responses since a time, oldest first."""

    def past_completions(since: dt.datetime) -> t.Iterator[dict[str, t.Any]]:
        start = since.astimezone(dt.timezone.utc).replace(tzinfo=None)
        query = (
            sa.select(response_model)
            .where(response_model.completed_at >= start)
            .order_by(response_model.completed_at, response_model.id)
            .execution_options(yield_per=200)
        )
        for response in db.session.scalars(query):
            yield completion(response)

    return past_completions
