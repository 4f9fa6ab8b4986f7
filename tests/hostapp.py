"""A host survey app written only from the README, used by the tests.

``create_app`` reads ``REFINER_SEGMENT_*``, ``SQLALCHEMY_DATABASE_URI`` and
``SECRET_KEY`` from the environment too, so ``flask --app tests.hostapp`` runs
the CLI against the same database and Redis as a test.
"""

from __future__ import annotations

import os
import typing as t

from blinker import Namespace
from flask import Flask
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
    app.extensions["test_db"] = db
    with app.app_context():
        db.create_all()
    return app


def _parse(value: str) -> t.Any:
    import json

    try:
        return json.loads(value)
    except ValueError:
        return value
