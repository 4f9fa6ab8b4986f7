"""Survey lifecycle events: ``survey_shown`` / ``survey_dismissed`` (#16, part 4)."""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
import sqlalchemy as sa
from flask_refiner_segment import workspaces
from flask_refiner_segment.outbound import settings as outbound_settings
from sqlalchemy import orm

from . import hostapp
from .conftest import drain
from .conftest import send_completion
from .helpers import deliveries
from .helpers import statuses
from .test_views import URL
from .test_views import allow
from .test_views import token

AT = dt.datetime(2026, 11, 28, 9, 30, tzinfo=dt.timezone.utc)


def turn_on(app: t.Any, ws: str = "default", on: bool = True) -> None:
    state = app.extensions["refiner_segment"]
    with app.app_context():
        workspaces.update(state, ws, {"lifecycle_events": on})
        outbound_settings.invalidate(state)


def shown(app: t.Any, **kwargs: t.Any) -> None:
    args = {"user_id": "u-1", "survey": {"id": "nps-2026", "name": "NPS"}, "at": AT}
    with app.test_request_context():
        hostapp.survey_shown.send(app, **{**args, **kwargs})


def dismissed(app: t.Any, **kwargs: t.Any) -> None:
    args = {"user_id": "u-1", "survey": "nps-2026", "at": AT}
    with app.test_request_context():
        hostapp.survey_dismissed.send(app, **{**args, **kwargs})


def test_off_by_default(app, segment, redis_url):
    shown(app)
    dismissed(app)
    assert deliveries(app) == []


def test_shown_and_dismissed_are_tracked(app, segment, redis_url):
    turn_on(app)
    shown(app)
    dismissed(app)
    send_completion(app, 1)
    assert statuses(app) == {"pending": 3}
    drain(app, redis_url, lambda: statuses(app) == {"sent": 3})
    tracks = [m for m in segment.messages if m["type"] == "track"]
    by_event = {m["event"]: m for m in tracks}
    assert set(by_event) == {"Survey Shown", "Survey Dismissed", "Survey Completed"}
    seen = by_event["Survey Shown"]
    assert seen["userId"] == "u-1"
    assert seen["properties"] == {"survey_id": "nps-2026", "survey_name": "NPS"}
    assert seen["timestamp"] == "2026-11-28T09:30:00.000Z"
    assert seen["context"]["integration"]["name"] == "refiner"
    assert by_event["Survey Dismissed"]["properties"]["survey_name"] is None
    assert len(set(segment.message_ids())) == len(segment.messages)


def test_names_from_config_and_survey_selection(make_app, segment, redis_url):
    app = make_app(
        REFINER_SEGMENT_SHOWN_EVENT="Viewed Survey",
        REFINER_SEGMENT_DISMISSED_EVENT="Closed Survey",
    )
    turn_on(app)
    state = app.extensions["refiner_segment"]
    with app.app_context():
        workspaces.update(state, "default", {"surveys": ["other"]})
    shown(app)  # not a selected survey: ignored
    assert deliveries(app) == []
    with app.app_context():
        workspaces.update(state, "default", {"surveys": None})
    shown(app)
    dismissed(app)
    drain(app, redis_url, lambda: statuses(app) == {"sent": 2})
    assert sorted(m["event"] for m in segment.messages) == [
        "Closed Survey",
        "Viewed Survey",
    ]


def test_retry_resends_the_same_message(app, segment, redis_url):
    turn_on(app)
    segment.set_fault(status=503, times=1)
    shown(app, id="show-1")
    drain(app, redis_url, lambda: statuses(app) == {"sent": 1})
    assert len(segment.messages) == 1
    (row,) = deliveries(app)
    assert row.attempts == 2
    assert segment.messages[0]["messageId"] in row.messages


def test_invalid_signals_never_raise(app, segment, caplog):
    turn_on(app)
    shown(app, user_id=None)
    shown(app, survey={"name": "no id"})
    dismissed(app, at="yesterday")
    assert deliveries(app) == []
    assert "survey_shown signal was ignored: user_id is missing" in caplog.text
    assert "at must be a datetime" in caplog.text


def test_inside_the_host_transaction(app, segment, redis_url):
    turn_on(app)
    db = app.extensions["test_db"]

    class ShownNote(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "host_shown_note"
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        text: orm.Mapped[str] = orm.mapped_column(sa.String(16))

    with app.app_context():
        ShownNote.__table__.create(db.engine, checkfirst=True)
    with app.test_request_context():
        db.session.add(ShownNote(text="rolled back"))
        db.session.flush()
        hostapp.survey_shown.send(app, user_id="u-1", survey="s-1", at=AT)
        db.session.rollback()
    assert deliveries(app) == []
    with app.test_request_context():
        db.session.add(ShownNote(text="committed"))
        db.session.flush()
        hostapp.survey_dismissed.send(app, user_id="u-1", survey="s-1", at=AT)
        db.session.commit()
    drain(app, redis_url, lambda: statuses(app) == {"sent": 1})
    assert [m["event"] for m in segment.messages] == ["Survey Dismissed"]


@pytest.mark.parametrize("checked", [True, False])
def test_settings_checkbox(make_app, checked):
    app = make_app()
    allow(app)
    turn_on(app, on=not checked)
    client = app.test_client()
    html = client.get(URL).get_data(as_text=True)
    assert 'id="lifecycle_events"' in html
    assert "Survey Shown" in html and "Survey Dismissed" in html
    data = {
        "csrf_token": token(html),
        "enabled": "y",
        "track_event": "Survey Completed",
        "trait_prefix": "refiner_",
        "send_all": "all",
    }
    if checked:
        data["lifecycle_events"] = "y"
    response = client.post(URL, data=data)
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    with app.app_context():
        assert app.extensions["refiner_segment"].owner.settings().lifecycle_events is (
            checked
        )
    page = client.get(URL).get_data(as_text=True)
    checkbox = page.split('id="lifecycle_events"')[0].rsplit("<input", 1)[1]
    assert ("checked" in checkbox) is checked
