"""The example survey app: sign in, answer a survey, watch it reach Segment."""

from __future__ import annotations

import datetime as dt
import os
import typing as t

import sqlalchemy as sa
from blinker import Namespace
from flask import Flask
from flask import session
from flask_refiner_segment import RefinerSegment
from flask_refiner_segment.testing.standin import SegmentStandIn
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import orm
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from . import demo_setup
from .history import make_source
from .history import seed_history
from .surveys import POWER_EXPORTERS
from .surveys import USERS

signals = Namespace()
#: The app's own signal, sent inside the transaction that saves a response.
survey_completed = signals.signal("survey_completed")
#: Sent when a survey is shown, and when the user dismisses it ("Not now").
survey_shown = signals.signal("survey_shown")
survey_dismissed = signals.signal("survey_dismissed")

db = SQLAlchemy()
csrf = CSRFProtect()
refiner_segment = RefinerSegment(
    db=db,
    signal=survey_completed,
    shown_signal=survey_shown,
    dismissed_signal=survey_dismissed,
)

#: Where the Segment stand-in is mounted inside this app.
STANDIN_PATH = "/segment-standin"


class SurveyResponse(db.Model):  # type: ignore[name-defined,misc]
    """A completed survey response: the app's own data."""

    __tablename__ = "example_response"

    id: orm.Mapped[str] = orm.mapped_column(sa.String(36), primary_key=True)
    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    survey_id: orm.Mapped[str] = orm.mapped_column(sa.String(64))
    answers: orm.Mapped[dict[str, t.Any]] = orm.mapped_column(sa.JSON)
    completed_at: orm.Mapped[dt.datetime]


# Past responses, for `flask refiner-segment backfill` and the settings page.
refiner_segment.completion_source(make_source(db, SurveyResponse))


@refiner_segment.settings_guard
def only_admins() -> bool:
    """The settings and segments pages are for signed-in admins only."""
    user = USERS.get(session.get("user", ""))
    return bool(user and user["admin"])


def create_app(config: dict[str, t.Any] | None = None) -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("EXAMPLE_INSTANCE_PATH"))
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("EXAMPLE_SECRET_KEY", "example-only-secret"),
        SQLALCHEMY_DATABASE_URI=os.environ.get(
            "EXAMPLE_DATABASE_URL", f"sqlite:///{app.instance_path}/example.db"
        ),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        # $REDIS_URL, else the Redis of the running `python -m example_app`.
        REFINER_SEGMENT_REDIS_URL=os.environ.get("REDIS_URL")
        or demo_setup.read_redis_url(app.instance_path),
        REFINER_SEGMENT_BACKOFF_BASE=1.0,
        REFINER_SEGMENT_BACKOFF_MAX=30.0,
        REFINER_SEGMENT_SWEEP_INTERVAL=15.0,
        # The extension's pages inside this app's own layout.
        REFINER_SEGMENT_BASE_TEMPLATE="layout.html",
        # Demo only: the Segment stand-in is a data plane on 127.0.0.1.
        REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True,
    )
    if os.environ.get("SEGMENT_WRITE_KEY"):
        # Real Segment (or EU / a data plane via SEGMENT_API_HOST), from the
        # environment as a deployment would; else the admin pastes a key on
        # the settings page and it is stored encrypted.
        app.config["REFINER_SEGMENT_WRITE_KEY"] = os.environ["SEGMENT_WRITE_KEY"]
        app.config["REFINER_SEGMENT_API_HOST"] = os.environ.get("SEGMENT_API_HOST")
    if os.environ.get("EXAMPLE_INBOUND_API_KEY"):
        app.config["REFINER_SEGMENT_INBOUND_API_KEY"] = os.environ[
            "EXAMPLE_INBOUND_API_KEY"
        ]
    app.config.update(config or {})

    db.init_app(app)
    csrf.init_app(app)
    refiner_segment.init_app(app)
    with app.app_context():
        db.create_all()
        if os.environ.get("EXAMPLE_SEED_HISTORY", "1") != "0":
            seed_history(db, SurveyResponse)
        if refiner_segment.get_segment_by_name(POWER_EXPORTERS["name"]) is None:
            refiner_segment.create_segment(
                POWER_EXPORTERS["name"], POWER_EXPORTERS["rules"]
            )

    prefix = app.config["REFINER_SEGMENT_URL_PREFIX"]
    standin = SegmentStandIn()
    standin.links = {
        "← Survey app": "/",
        "Segment settings": prefix + "/",
        "User segments": prefix + "/segments/",
    }
    app.extensions["segment_standin"] = standin
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {STANDIN_PATH: standin}
    )
    from .views import register_views

    register_views(app)
    return app
