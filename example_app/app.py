"""The example survey app: sign in, answer a survey, watch it reach Segment."""

from __future__ import annotations

import datetime as dt
import os
import typing as t
import uuid

import sqlalchemy as sa
from blinker import Namespace
from flask import Flask
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_refiner_segment import RefinerSegment
from flask_refiner_segment.testing.standin import SegmentStandIn
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect
from sqlalchemy import orm
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from .history import make_source
from .history import seed_history
from .inbound_demo import demo_batch
from .surveys import POWER_EXPORTERS
from .surveys import SURVEYS
from .surveys import USERS
from .surveys import signal_questions

signals = Namespace()
#: The app's own signal, sent after a response is committed.
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
    """The settings page is for signed-in admins only."""
    user = USERS.get(session.get("user", ""))
    return bool(user and user["admin"])


def create_app(config: dict[str, t.Any] | None = None) -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("EXAMPLE_INSTANCE_PATH"))
    os.makedirs(app.instance_path, exist_ok=True)
    port = os.environ.get("EXAMPLE_PORT", "5000")
    app.config.from_mapping(
        SECRET_KEY=os.environ.get("EXAMPLE_SECRET_KEY", "example-only-secret"),
        SQLALCHEMY_DATABASE_URI=os.environ.get(
            "EXAMPLE_DATABASE_URL", f"sqlite:///{app.instance_path}/example.db"
        ),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        REFINER_SEGMENT_REDIS_URL=os.environ.get("REDIS_URL"),
        REFINER_SEGMENT_BACKOFF_BASE=1.0,
        REFINER_SEGMENT_BACKOFF_MAX=30.0,
        REFINER_SEGMENT_SWEEP_INTERVAL=15.0,
    )
    if os.environ.get("SEGMENT_WRITE_KEY"):
        # Real Segment (or EU / a data plane via SEGMENT_API_HOST).
        app.config["REFINER_SEGMENT_WRITE_KEY"] = os.environ["SEGMENT_WRITE_KEY"]
        app.config["REFINER_SEGMENT_API_HOST"] = os.environ.get("SEGMENT_API_HOST")
    else:
        # Offline: the stand-in mounted below receives the calls.
        app.config["REFINER_SEGMENT_WRITE_KEY"] = "demo-write-key-0000"
        app.config["REFINER_SEGMENT_API_HOST"] = (
            f"http://127.0.0.1:{port}{STANDIN_PATH}"
        )
    # The key Segment would use to call this app as a destination.
    app.config["REFINER_SEGMENT_INBOUND_API_KEY"] = os.environ.get(
        "EXAMPLE_INBOUND_API_KEY", "demo-inbound-key"
    )
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

    standin = SegmentStandIn()
    app.extensions["segment_standin"] = standin
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {STANDIN_PATH: standin}
    )
    _register_views(app)
    return app


def _current_user() -> dict[str, t.Any] | None:
    user_id = session.get("user")
    return {"id": user_id, **USERS[user_id]} if user_id in USERS else None


def _register_views(app: Flask) -> None:
    @app.context_processor
    def inject() -> dict[str, t.Any]:
        return {
            "user": _current_user(),
            "standin_url": STANDIN_PATH + "/",
            "settings_url": app.config["REFINER_SEGMENT_URL_PREFIX"] + "/",
        }

    @app.get("/")
    def index() -> str:
        user = _current_user()
        done: set[str] = set()
        if user:
            done = set(
                db.session.scalars(
                    sa.select(SurveyResponse.survey_id).where(
                        SurveyResponse.user_id == user["id"]
                    )
                )
            )
        visible = {
            sid: s for sid, s in SURVEYS.items() if user and _targets(user["id"], s)
        }
        return render_template("index.html", users=USERS, surveys=visible, done=done)

    @app.post("/login")
    def login() -> t.Any:
        name = request.form.get("user", "")
        if name not in USERS:
            abort(400)
        session["user"] = name
        return redirect(url_for("index"))

    @app.post("/logout")
    def logout() -> t.Any:
        session.clear()
        return redirect(url_for("index"))

    @app.route("/surveys/<survey_id>", methods=["GET", "POST"])
    def take_survey(survey_id: str) -> t.Any:
        user = _current_user()
        survey = SURVEYS.get(survey_id)
        if survey is None:
            abort(404)
        if user is None:
            flash("Sign in first.")
            return redirect(url_for("index"))
        if not _targets(user["id"], survey):
            abort(404)
        if request.method == "POST":
            answers = _read_answers(survey)
            response = SurveyResponse(
                id=str(uuid.uuid4()),
                user_id=user["id"],
                survey_id=survey_id,
                answers=answers,
                completed_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
            )
            db.session.add(response)
            # Inside the transaction, as the extension's README recommends: the
            # delivery commits with the response, and a rollback sends nothing.
            survey_completed.send(
                current_app._get_current_object(),  # type: ignore[attr-defined]
                user_id=user["id"],
                survey={
                    "id": survey["id"],
                    "name": survey["name"],
                    "questions": signal_questions(survey),
                },
                response={
                    "id": response.id,
                    "completed_at": response.completed_at,
                    "answers": answers,
                },
                account=user["account"],
                user_traits={"email": user["email"], "name": user["name"]},
            )
            db.session.commit()
            flash(f"Thanks! Your answers to “{survey['name']}” were saved.")
            return redirect(url_for("index"))
        survey_shown.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            user_id=user["id"],
            survey={"id": survey["id"], "name": survey["name"]},
        )
        return render_template("survey.html", survey=survey)

    @app.post("/surveys/<survey_id>/dismiss")
    def dismiss_survey(survey_id: str) -> t.Any:
        user = _current_user()
        survey = SURVEYS.get(survey_id)
        if survey is None or user is None:
            abort(404)
        survey_dismissed.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            user_id=user["id"],
            survey={"id": survey["id"], "name": survey["name"]},
        )
        flash(f"“{survey['name']}” dismissed. Maybe later!")
        return redirect(url_for("index"))

    @app.post("/demo/inbound")
    def inbound_demo() -> t.Any:
        """Post what Segment would send to the inbound route, as Segment does."""
        if not only_admins():
            abort(403)
        key = app.config["REFINER_SEGMENT_INBOUND_API_KEY"]
        url = app.config["REFINER_SEGMENT_URL_PREFIX"] + "/inbound"
        answer = app.test_client().post(
            url, json={"batch": demo_batch()}, auth=(key, ""), headers={}
        )
        flash(f"Segment → this app: HTTP {answer.status_code} {answer.get_json()}")
        return redirect(url_for("profile"))

    @app.get("/profile")
    def profile() -> t.Any:
        user = _current_user()
        if user is None:
            return redirect(url_for("index"))
        data = refiner_segment.get_profile(user["id"])
        events = refiner_segment.recent_events(user["id"], limit=10)
        return render_template("profile.html", profile=data, events=events)


def _targets(user_id: str, survey: dict[str, t.Any]) -> bool:
    """Whether a survey is shown to a user: everyone, or its segment's members."""
    if not survey.get("segment"):
        return True
    segment = refiner_segment.get_segment_by_name(survey["segment"])
    return segment is not None and refiner_segment.is_member(user_id, segment)


def _read_answers(survey: dict[str, t.Any]) -> dict[str, t.Any]:
    answers: dict[str, t.Any] = {}
    for q in survey["questions"]:
        if q["input"] == "multi":
            answers[q["key"]] = request.form.getlist(q["key"])
            continue
        value = request.form.get(q["key"], "").strip()
        if q["input"] == "scale":
            answers[q["key"]] = int(value) if value.isdigit() else None
        else:
            answers[q["key"]] = value
    return answers
