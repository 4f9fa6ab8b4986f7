"""The inbound route's answers: malformed and too large bodies, unknown types,
methods, signals, server errors, and the host's CSRFProtect.

Runs on SQLite and PostgreSQL (the ``database_url`` fixture).

The ``inbound_app`` fixture is test_inbound.py's.
"""

from __future__ import annotations

import io
import json
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment import inbound_received

from .inbound_support import API_KEY
from .inbound_support import URL
from .inbound_support import basic
from .inbound_support import close_app
from .inbound_support import counts
from .inbound_support import identify
from .inbound_support import make_app
from .inbound_support import nothing_stored
from .inbound_support import page
from .inbound_support import post
from .inbound_support import segment_headers
from .inbound_support import track
from .test_inbound import USER
from .test_inbound import inbound_app as inbound_app  # a fixture

# -- answers ---------------------------------------------------------------------

MALFORMED: list[tuple[bytes, str]] = [
    (b"", "empty"),
    (b"{", "Malformed JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b'{"type": "track", "x": NaN}', "NaN is not valid JSON"),
    (b"[" * 100000, "nested too deeply"),
    (b'"identify"', "must be a message object"),
    (b'{"batch": {"type": "track"}}', '"batch" must be an array'),
    (b"[1]", "message 0: not a JSON object but a number"),
    (b'{"userId": "u"}', 'message 0: missing "type"'),
    (b'{"type": 7, "userId": "u"}', '"type" must be a non-empty string'),
    (
        b'{"type": "identify", "userId": "u", "traits": []}',
        '"traits" must be an object',
    ),
    (b'{"type": "identify", "userId": ["u"]}', '"userId" must be a string'),
    (b'{"type": "group", "userId": "u"}', 'missing "groupId"'),
    (b'{"type": "track", "userId": "u"}', 'needs "event"'),
    (b'{"type": "track", "userId": "u", "event": "e", "properties": 3}', "properties"),
    (b'{"type": "page", "userId": "u", "name": {}}', '"name" must be a string'),
    (b'{"type": "alias", "userId": "u"}', 'missing "previousId"'),
    (
        b'{"type": "track", "userId": "u", "event": "e", "timestamp": "yesterday"}',
        "ISO-8601",
    ),
    (
        b'{"type": "track", "userId": "u", "event": "e", "sentAt": 1700000000}',
        '"sentAt"',
    ),
    (b'{"type": "identify", "userId": "u", "traits": {"n": 1e999}}', "out of range"),
    (b'{"type": "track", "userId": "u", "event": "e", "messageId": {}}', "messageId"),
]


@pytest.mark.parametrize(("body", "reason"), MALFORMED, ids=[r for _, r in MALFORMED])
def test_malformed_is_400_with_reason(inbound_app, body, reason):
    response = post(inbound_app, body)
    assert response.status_code == 400
    assert response.is_json
    assert reason in response.json["message"]
    assert nothing_stored(inbound_app)


def test_one_bad_message_rejects_the_whole_batch(inbound_app):
    bad = dict(identify("bad"), traits="plan=pro")
    response = post(inbound_app, {"batch": [identify(), track(), bad, page()]})
    assert response.status_code == 400
    assert response.json["index"] == 2
    assert response.json["message"].startswith("message 2: ")
    assert nothing_stored(inbound_app)


def test_too_large_413(database_url):
    app = make_app(database_url, REFINER_SEGMENT_INBOUND_MAX_BYTES=2000)
    try:
        big = [track(f"m-{i}") for i in range(20)]
        response = post(app, big)
        assert response.status_code == 413
        assert response.json["error"] == "too_large"
        # Without Content-Length (chunked): the capped read notices.
        data = json.dumps(big).encode()
        response = app.test_client().post(
            URL,
            input_stream=io.BytesIO(data),
            headers={**segment_headers(), "Transfer-Encoding": "chunked"},
            # What a server (gunicorn, werkzeug) sets for a chunked body.
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert response.status_code == 413
        assert nothing_stored(app)
        assert post(app, track()).status_code == 200
        response = app.test_client().post(
            URL,
            input_stream=io.BytesIO(json.dumps(track("small")).encode()),
            headers={**segment_headers(), "Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert response.json["stored"] == 1
    finally:
        close_app(app)


def test_host_max_content_length_answers_json(database_url):
    app = make_app(database_url, MAX_CONTENT_LENGTH=100)
    try:
        response = post(app, track())
        assert response.status_code == 413
        assert response.is_json
    finally:
        close_app(app)


def test_unknown_type_is_501_alone_and_counted_in_a_batch(inbound_app):
    unknown = {"type": "survey", "userId": USER, "messageId": "x"}
    response = post(inbound_app, unknown)
    assert response.status_code == 501
    assert response.json["error"] == "unsupported_type"
    assert "survey" in response.json["message"]
    assert post(inbound_app, [unknown, dict(unknown, type="Survey")]).status_code == 501
    response = post(inbound_app, [unknown, track()])
    assert response.status_code == 200
    assert response.json == {
        "stored": 1,
        "duplicates": 0,
        "ignored": 0,
        "unsupported": 1,
    }


def test_types_are_case_insensitive(inbound_app):
    assert post(inbound_app, dict(track(), type="Track")).json["stored"] == 1


def test_other_methods_405_json(inbound_app):
    client = inbound_app.test_client()
    for method in ("get", "put", "delete"):
        response = getattr(client, method)(URL, headers=basic())
        assert response.status_code == 405
        assert response.is_json
        assert response.headers["Allow"] == "POST"


def test_empty_batch_is_ok(inbound_app):
    assert post(inbound_app, []).json == {
        "stored": 0,
        "duplicates": 0,
        "ignored": 0,
        "unsupported": 0,
    }


def test_signal_after_commit(inbound_app):
    received: list[dict[str, t.Any]] = []

    def receiver(sender: t.Any, **kwargs: t.Any) -> None:
        assert sender is inbound_app
        received.append(kwargs)
        assert counts(inbound_app)["refiner_segment_event"] == 1  # already committed

    with inbound_received.connected_to(receiver):
        post(inbound_app, [track(), track(), track(user_id=None, message_id="anon")])
    assert received == [
        {"workspace_id": "default", "stored": 1, "duplicates": 1, "ignored": 1}
    ]


def test_failing_signal_receiver_still_answers_200(inbound_app):
    def receiver(sender: t.Any, **kwargs: t.Any) -> None:
        raise RuntimeError("host bug")

    with inbound_received.connected_to(receiver):
        assert post(inbound_app, track()).status_code == 200


# -- CSRF ------------------------------------------------------------------------


@pytest.mark.parametrize("csrf_first", [True, False], ids=["csrf-before", "csrf-after"])
def test_host_csrf_protect_does_not_block_the_route(database_url, csrf_first):
    from flask_refiner_segment import RefinerSegment
    from flask_sqlalchemy import SQLAlchemy
    from flask_wtf.csrf import CSRFProtect

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="s",
        SQLALCHEMY_DATABASE_URI=database_url,
        REFINER_SEGMENT_INBOUND_API_KEY=API_KEY,
        REFINER_SEGMENT_REDIS_URL="redis://127.0.0.1:1/0",
    )
    db = SQLAlchemy(app)
    csrf = CSRFProtect()
    if csrf_first:
        csrf.init_app(app)
    RefinerSegment(app, db=db)
    if not csrf_first:
        csrf.init_app(app)

    @app.post("/host-form")
    def host_form() -> str:
        return "ok"

    app.extensions["test_db"] = db
    with app.app_context():
        db.create_all()
    try:
        assert post(app, track()).status_code == 200
        assert post(app, track("second")).status_code == 200
        assert (
            app.test_client().post("/host-form").status_code == 400
        )  # still protected
    finally:
        close_app(app)


def test_server_errors_are_json(inbound_app, monkeypatch):
    from flask_refiner_segment.inbound import views

    def bug(*args: t.Any) -> t.NoReturn:
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "store", bug)
    response = post(inbound_app, track())
    assert response.status_code == 500
    assert response.json["error"] == "internal_error"

    def data_error(*args: t.Any) -> t.NoReturn:
        raise sa.exc.DataError("INSERT ...", {}, ValueError("value too long"))

    monkeypatch.setattr(views, "store", data_error)
    response = post(inbound_app, track())
    assert response.status_code == 400
    assert "value too long" in response.json["message"]
