"""A host survey app written only from the README, used by the tests.

``create_app`` reads ``REFINER_SEGMENT_*``, ``SQLALCHEMY_DATABASE_URI`` and
``SECRET_KEY`` from the environment too, so ``flask --app tests.hostapp`` runs
the CLI against the same database and Redis as a test.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import typing as t

from blinker import Namespace
from flask import Flask
from flask import current_app
from flask_refiner_segment import RefinerSegment
from flask_sqlalchemy import SQLAlchemy

signals = Namespace()
survey_completed = signals.signal("survey_completed")
survey_shown = signals.signal("survey_shown")
survey_dismissed = signals.signal("survey_dismissed")


def create_app(config: dict[str, t.Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(
        SECRET_KEY="test-secret",
        SQLALCHEMY_DATABASE_URI="sqlite:///:memory:",
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
    )
    app.config.from_prefixed_env("HOSTAPP")
    for key, value in os.environ.items():
        if key.startswith("REFINER_SEGMENT_") or key in ("SQLALCHEMY_DATABASE_URI",):
            app.config[key] = _parse(value)
    app.config.update(config or {})
    db = SQLAlchemy()
    db.init_app(app)
    refiner = RefinerSegment(
        db=db,
        signal=survey_completed,
        shown_signal=survey_shown,
        dismissed_signal=survey_dismissed,
    )
    refiner.init_app(app)
    refiner.completion_source(history)
    app.extensions["test_db"] = db
    if app.config.get("CREATE_TABLES", True):  # HOSTAPP_CREATE_TABLES=false
        with app.app_context():
            db.create_all()
    return app


#: The first past completion of :func:`history`; one an hour after it.
HISTORY_START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def history_item(n: int) -> dict[str, t.Any]:
    """Past completion ``n`` (the signal's keyword arguments)."""
    return {
        "user_id": f"u-{n % 5}",
        "survey": {
            "id": "nps-2026" if n % 3 else "onboarding",
            "name": "NPS Survey",
            "questions": [{"key": "how_likely", "type": "nps"}],
        },
        "response": {
            "id": f"r-h{n}",
            "completed_at": HISTORY_START + dt.timedelta(hours=n),
            "answers": {"how_likely": n % 11, "why": f"answer {n}"},
        },
        "user_traits": {"email": f"user{n % 5}@example.com"},
    }


def history(since: dt.datetime) -> t.Iterator[dict[str, t.Any]]:
    """The host's past completions, oldest first: ``HISTORY`` of them (app
    config), each after ``HISTORY_DELAY`` seconds; ``HISTORY_FAIL_AT``: the
    source raises before that one (a database that went away)."""
    config = current_app.config
    delay = float(config.get("HISTORY_DELAY", 0))
    fail_at = config.get("HISTORY_FAIL_AT")
    for n in range(int(config.get("HISTORY", 0))):
        item = history_item(n)
        if item["response"]["completed_at"] < since:
            continue
        if fail_at is not None and n == int(fail_at):
            raise ConnectionError("the host's database went away")
        if delay:
            time.sleep(delay)
        yield item


def _parse(value: str) -> t.Any:
    import json

    try:
        return json.loads(value)
    except ValueError:
        return value
