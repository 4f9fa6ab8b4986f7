"""The example app's pages: sign in, surveys, what Segment sent, error pages."""

from __future__ import annotations

import datetime as dt
import typing as t
import uuid

import sqlalchemy as sa
from flask import Flask
from flask import abort
from flask import current_app
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from .app import STANDIN_PATH
from .app import SurveyResponse
from .app import db
from .app import only_admins
from .app import refiner_segment
from .app import survey_completed
from .app import survey_dismissed
from .app import survey_shown
from .inbound_demo import demo_batch
from .surveys import SURVEYS
from .surveys import USERS
from .surveys import signal_questions

#: Where the demo keeps a survey's answers when the session expired.
DRAFT = "draft"


def when(value: dt.datetime | None) -> str:
    """A time with its date and zone (stored times are UTC)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _current_user() -> dict[str, t.Any] | None:
    user_id = session.get("user")
    return {"id": user_id, **USERS[user_id]} if user_id in USERS else None


def register_views(app: Flask) -> None:
    app.add_template_filter(when)
    prefix = app.config["REFINER_SEGMENT_URL_PREFIX"]

    @app.context_processor
    def inject() -> dict[str, t.Any]:
        return {
            "user": _current_user(),
            "standin_url": STANDIN_PATH + "/",
            "settings_url": prefix + "/",
            "segments_url": prefix + "/segments/",
        }

    @app.get("/")
    def index() -> str:
        user = _current_user()
        done = _answered(user["id"]) if user else {}
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
        draft = session.get(DRAFT)
        if draft and draft.get("survey") in SURVEYS:
            return redirect(url_for("take_survey", survey_id=draft["survey"]))
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
            _save_response(user, survey, _read_answers(survey))
            session.pop(DRAFT, None)
            flash(f"Thanks! Your answers to “{survey['name']}” were saved.")
            return redirect(url_for("index"))
        draft = session.get(DRAFT) or {}
        kept = draft.get("answers") if draft.get("survey") == survey_id else None
        survey_shown.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            user_id=user["id"],
            survey={"id": survey["id"], "name": survey["name"]},
        )
        return render_template(
            "survey.html",
            survey=survey,
            answered_at=_answered(user["id"]).get(survey_id),
            kept=kept or {},
        )

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
        """Post what Segment would send to the inbound route, with the key
        the admin pasted (as one pastes it into Segment's destination)."""
        if not only_admins():
            abort(403)
        key = request.form.get("api_key", "").strip()
        if not key:
            flash(
                "Paste the inbound API key first: generate it on the Segment"
                " settings page (in Segment you would paste it into the"
                " destination's settings).",
                "error",
            )
            return redirect(url_for("profile"))
        session["inbound_key"] = key  # the demo remembers it for the next click
        answer = current_app.test_client().post(
            prefix + "/inbound", json={"batch": demo_batch()}, auth=(key, "")
        )
        flash(*_describe_inbound(answer.status_code, answer.get_json(silent=True)))
        return redirect(url_for("profile"))

    @app.get("/profile")
    def profile() -> t.Any:
        user = _current_user()
        if user is None:
            return redirect(url_for("index"))
        return render_template(
            "profile.html",
            profile=refiner_segment.get_profile(user["id"]),
            events=refiner_segment.recent_events(user["id"], limit=10),
            views=refiner_segment.recent_views(user["id"], limit=10),
            inbound_key=session.get("inbound_key", ""),
        )

    @app.errorhandler(CSRFError)
    def csrf_expired(error: CSRFError) -> t.Any:
        survey_id = (request.view_args or {}).get("survey_id")
        if request.endpoint == "take_survey" and survey_id in SURVEYS:
            session[DRAFT] = {
                "survey": survey_id,
                "answers": {k: request.form.getlist(k) for k in request.form},
            }
            flash(
                "Your session expired before the survey was sent: your answers"
                " are kept. Check them and submit again.",
                "warning",
            )
            if _current_user() is None:
                return redirect(url_for("index"))
            return redirect(url_for("take_survey", survey_id=survey_id))
        return _error_page(
            400,
            "This page has expired",
            "The form was open too long or your session ended, so nothing was"
            " done. Go back, reload the page and try again.",
        )

    @app.errorhandler(403)
    def forbidden(error: HTTPException) -> t.Any:
        text = (
            "Only admins can open this page: sign in as Ann Example (admin)."
            if _current_user() is None or not only_admins()
            else "You are not allowed to do this."
        )
        return _error_page(403, "Admins only", text)

    @app.errorhandler(404)
    def not_found(error: HTTPException) -> t.Any:
        return _error_page(
            404, "Page not found", "There is nothing here, or it is not for you."
        )


def _error_page(status: int, title: str, text: str) -> tuple[str, int]:
    return render_template("error.html", title=title, text=text), status


def _describe_inbound(status: int, body: t.Any) -> tuple[str, str]:
    """The inbound route's answer, in words (and the flash category)."""
    if status == 200 and isinstance(body, dict):
        parts = [f"{body.get('stored', 0)} stored"]
        parts += [
            f"{body[name]} {name}"
            for name in ("duplicates", "ignored", "unsupported")
            if body.get(name)
        ]
        return f"Segment → this app: HTTP 200, messages {', '.join(parts)}.", "success"
    if status == 401:
        return (
            "Segment → this app: HTTP 401, the inbound API key was refused."
            " Paste the current key (rotating it replaces the old one).",
            "error",
        )
    reason = body.get("error") if isinstance(body, dict) else None
    return f"Segment → this app: HTTP {status}{f', {reason}' if reason else ''}.", (
        "error"
    )


def _answered(user_id: str) -> dict[str, dt.datetime]:
    """When the user last answered each survey."""
    rows = db.session.execute(
        sa.select(SurveyResponse.survey_id, sa.func.max(SurveyResponse.completed_at))
        .where(SurveyResponse.user_id == user_id)
        .group_by(SurveyResponse.survey_id)
    )
    return {survey_id: at for survey_id, at in rows}


def _save_response(
    user: dict[str, t.Any], survey: dict[str, t.Any], answers: dict[str, t.Any]
) -> None:
    response = SurveyResponse(
        id=str(uuid.uuid4()),
        user_id=user["id"],
        survey_id=survey["id"],
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
