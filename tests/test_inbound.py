"""The inbound route: Segment payloads of every type, replay, order, auth, answers.

Runs on SQLite and PostgreSQL (the ``database_url`` fixture).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment import inbound_received
from flask_refiner_segment.inbound import queries as api
from flask_refiner_segment.state import get_state as _get_state

from .inbound_support import API_KEY
from .inbound_support import URL
from .inbound_support import alias
from .inbound_support import basic
from .inbound_support import close_app
from .inbound_support import counts
from .inbound_support import delete
from .inbound_support import group
from .inbound_support import identify
from .inbound_support import make_app
from .inbound_support import nothing_stored
from .inbound_support import page
from .inbound_support import post
from .inbound_support import screen
from .inbound_support import segment_headers
from .inbound_support import track

USER = "97980cfea0067"
GROUP = "0e8c78ea9d97a7b8185e8632"


@pytest.fixture
def inbound_app(database_url: str) -> t.Iterator[Flask]:
    app = make_app(database_url)
    yield app
    close_app(app)


def profile(app: Flask, user_id: str = USER, workspace_id: str | None = None) -> t.Any:
    with app.app_context():
        return api.get_profile(user_id, workspace_id)


def every_type() -> list[dict[str, t.Any]]:
    return [identify(), group(), track(), page(), screen()]


# -- storing and reading -------------------------------------------------------


def test_every_type_one_request_each_is_stored_and_readable(inbound_app):
    for message in every_type():
        response = post(inbound_app, message)
        assert response.status_code == 200, response.json
        assert response.json == {
            "stored": 1,
            "duplicates": 0,
            "ignored": 0,
            "unsupported": 0,
        }

    p = profile(inbound_app)
    assert p["traits"]["email"] == "peter@example.com"
    assert p["traits"]["logins"] == 5
    assert p["traits"]["address"]["city"] == "San Francisco"
    assert p["trait_times"]["email"] == dt.datetime(2026, 2, 23, 22, 28, 55, 111000)
    assert p["first_seen"] == dt.datetime(2026, 2, 23, 22, 28, 55, 111000)
    assert p["last_seen"] == dt.datetime(2026, 2, 23, 22, 32)
    [account] = p["accounts"]
    assert account["group_id"] == GROUP
    assert account["traits"] == {
        "name": "Initech",
        "industry": "Technology",
        "employees": 329,
        "plan": "enterprise",
        "total billed": 830,
    }
    [event] = p["events"]
    assert event["name"] == "Registered"
    assert event["properties"]["items"] == [{"sku": "a-1"}]
    assert event["timestamp"] == dt.datetime(2026, 2, 23, 22, 30)
    assert event["message_id"] == "ajs-track-1"
    with inbound_app.app_context():
        views = api.recent_views(USER)
        acct = api.get_account(GROUP)
        assert api.recent_events(USER, limit=5) == p["events"]
    assert [(v["kind"], v["name"], v["category"]) for v in views] == [
        ("screen", "Home", None),
        ("page", "Analytics Academy", "Docs"),
    ]
    assert views[1]["properties"]["path"] == "/academy/"
    assert acct["user_ids"] == [USER]


def test_batch_and_array_bodies(inbound_app):
    response = post(inbound_app, {"batch": every_type()})
    assert response.json == {
        "stored": 5,
        "duplicates": 0,
        "ignored": 0,
        "unsupported": 0,
    }
    more = [track(message_id=f"array-{i}", event=f"E{i}") for i in range(3)]
    response = post(inbound_app, more)
    assert response.status_code == 200
    assert response.json["stored"] == 3
    with inbound_app.app_context():
        assert len(api.recent_events(USER)) == 4
        assert len(api.recent_events(USER, limit=2)) == 2


def test_replay_stores_nothing_twice(inbound_app):
    batch = every_type()
    assert post(inbound_app, {"batch": batch}).json["stored"] == 5
    before = counts(inbound_app)
    for message in batch:
        response = post(inbound_app, message)
        assert response.status_code == 200
        assert response.json == {
            "stored": 0,
            "duplicates": 1,
            "ignored": 0,
            "unsupported": 0,
        }
    assert post(inbound_app, {"batch": batch}).json["duplicates"] == 5
    assert counts(inbound_app) == before


def test_duplicate_within_one_request(inbound_app):
    response = post(inbound_app, [track(), track()])
    assert response.json == {
        "stored": 1,
        "duplicates": 1,
        "ignored": 0,
        "unsupported": 0,
    }
    assert counts(inbound_app)["refiner_segment_event"] == 1


def test_message_without_message_id_gets_a_derived_one(inbound_app):
    first = track()
    del first["messageId"]
    again = dict(
        first, sentAt="2026-02-23T23:00:00.000Z"
    )  # a retry: only sentAt differs
    assert post(inbound_app, first).json["stored"] == 1
    assert post(inbound_app, again).json["duplicates"] == 1
    other = dict(first, event="Another")
    assert post(inbound_app, other).json["stored"] == 1
    with inbound_app.app_context():
        ids = [e["message_id"] for e in api.recent_events(USER)]
    assert all(i.startswith("sha256:") and len(i) == 71 for i in ids)


def test_long_message_id_is_hashed(inbound_app):
    message = track(message_id="m" * 400)
    assert post(inbound_app, message).json["stored"] == 1
    assert post(inbound_app, message).json["duplicates"] == 1


def test_messages_without_user_id_are_ignored(inbound_app):
    anonymous = [identify(user_id=None), track(user_id=None), page(user_id=None)]
    anonymous.append(dict(track(message_id="empty"), userId=""))
    response = post(inbound_app, {"batch": [*anonymous, track(message_id="known")]})
    assert response.json == {
        "stored": 1,
        "duplicates": 0,
        "ignored": 4,
        "unsupported": 0,
    }
    assert counts(inbound_app)["refiner_segment_event"] == 1


def test_numeric_user_id_and_snake_case_keys(inbound_app):
    message = {
        "type": "identify",
        "user_id": 42,
        "message_id": "snake",
        "traits": {"a": 1},
    }
    assert post(inbound_app, message).json["stored"] == 1
    assert profile(inbound_app, "42")["traits"] == {"a": 1}


# -- order ---------------------------------------------------------------------


def test_out_of_order_identifies_keep_the_newest_value(inbound_app):
    newer = identify(
        "new", at="2026-03-02T10:00:00Z", traits={"plan": "pro", "seats": 10}
    )
    older = identify(
        "old",
        at="2026-03-01T10:00:00Z",
        traits={"plan": "free", "seats": 1, "role": "dev"},
    )
    assert post(inbound_app, newer).status_code == 200
    assert post(inbound_app, older).status_code == 200
    p = profile(inbound_app)
    assert p["traits"] == {"plan": "pro", "seats": 10, "role": "dev"}
    assert p["first_seen"] == dt.datetime(2026, 3, 1, 10)
    assert p["last_seen"] == dt.datetime(2026, 3, 2, 10)
    # In one batch, in any order.
    batch = [
        identify("b2", at="2026-03-05T00:00:02Z", traits={"plan": "enterprise"}),
        identify("b1", at="2026-03-05T00:00:01Z", traits={"plan": "team"}),
    ]
    post(inbound_app, {"batch": batch})
    assert profile(inbound_app)["traits"]["plan"] == "enterprise"
    # Group traits follow the same rule.
    post(
        inbound_app, group("g-new", at="2026-03-02T00:00:00Z", traits={"plan": "gold"})
    )
    post(inbound_app, group("g-old", at="2026-03-01T00:00:00Z", traits={"plan": "tin"}))
    assert profile(inbound_app)["accounts"][0]["traits"] == {"plan": "gold"}


def test_timestamp_falls_back_and_future_is_clamped(inbound_app):
    a = track("fallback-original", event="A")
    del a["timestamp"]
    a["originalTimestamp"] = "2026-01-01T01:00:00+01:00"
    b = track("fallback-received", event="B")
    for key in ("timestamp", "originalTimestamp"):
        del b[key]
    b["receivedAt"] = "2026-01-02T00:00:00Z"
    c = {"type": "track", "userId": USER, "event": "C", "messageId": "no-times"}
    d = track("future", event="D", at="2999-01-01T00:00:00Z")
    before = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert post(inbound_app, [a, b, c, d]).json["stored"] == 4
    with inbound_app.app_context():
        times = {e["name"]: e["timestamp"] for e in api.recent_events(USER)}
    assert times["A"] == dt.datetime(2026, 1, 1, 0, 0)
    assert times["B"] == dt.datetime(2026, 1, 2)
    assert before <= times["C"] <= before + dt.timedelta(minutes=1)
    assert before <= times["D"] <= before + dt.timedelta(minutes=1)


# -- alias and delete ------------------------------------------------------------


def test_alias_merges_previous_id_into_user_id(inbound_app):
    anon = "anon-7f3"
    post(
        inbound_app,
        [
            identify(
                "a1",
                anon,
                at="2026-01-01T00:00:00Z",
                traits={"plan": "free", "utm": "ad"},
            ),
            identify("a2", "u-real", at="2026-01-02T00:00:00Z", traits={"plan": "pro"}),
            track("a3", anon, event="Viewed Pricing", at="2026-01-01T00:01:00Z"),
            page("a4", anon, at="2026-01-01T00:02:00Z"),
            group("a5", anon, "acct-1", "2026-01-01T00:03:00Z", {"name": "A"}),
        ],
    )
    response = post(inbound_app, alias("a6", "u-real", anon, at="2026-01-03T00:00:00Z"))
    assert response.json["stored"] == 1
    assert profile(inbound_app, anon) is None
    p = profile(inbound_app, "u-real")
    assert p["traits"] == {"plan": "pro", "utm": "ad"}
    assert p["first_seen"] == dt.datetime(2026, 1, 1)
    assert p["last_seen"] == dt.datetime(2026, 1, 3)
    assert [e["name"] for e in p["events"]] == ["Viewed Pricing"]
    assert [a["group_id"] for a in p["accounts"]] == ["acct-1"]
    with inbound_app.app_context():
        assert len(api.recent_views("u-real")) == 1
    # Aliasing to itself, or without userId, changes nothing.
    assert post(inbound_app, alias("a7", "u-real", "u-real")).json["stored"] == 1
    assert post(inbound_app, alias("a8", None, "u-real")).json["ignored"] == 1
    assert profile(inbound_app, "u-real")["traits"] == p["traits"]


def test_delete_erases_the_user_and_replays_stay_idempotent(inbound_app):
    other = identify("other", user_id="someone-else")
    post(inbound_app, {"batch": [*every_type(), other]})
    assert post(inbound_app, delete()).json["stored"] == 1
    assert profile(inbound_app) is None
    with inbound_app.app_context():
        assert api.recent_events(USER) == []
        assert api.recent_views(USER) == []
        assert api.get_account(GROUP)["user_ids"] == []
    assert profile(inbound_app, "someone-else") is not None
    # Segment retrying the old messages stores nothing again.
    assert post(inbound_app, {"batch": every_type()}).json["duplicates"] == 5
    assert profile(inbound_app) is None


def test_batch_keeps_its_order_around_delete(inbound_app):
    batch = [track("t1", event="Before"), delete("d1"), track("t2", event="After")]
    assert post(inbound_app, batch).json["stored"] == 3
    with inbound_app.app_context():
        assert [e["name"] for e in api.recent_events(USER)] == ["After"]


# -- auth ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        basic(),
        basic(password="ignored"),
        {"Authorization": f"Bearer {API_KEY}"},
        {"Authorization": f"bearer   {API_KEY}  "},
    ],
    ids=["basic", "basic-with-password", "bearer", "bearer-lowercase"],
)
def test_auth_accepted(inbound_app, headers):
    response = post(
        inbound_app, track(), {**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        basic("wrong-key"),
        basic(""),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": f"Token {API_KEY}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {API_KEY}x"},
        {"Authorization": "Bearer " + "k" * 5000},
    ],
    ids=[
        "none",
        "empty",
        "wrong",
        "empty-key",
        "bad-b64",
        "scheme",
        "blank",
        "near",
        "long",
    ],
)
def test_auth_rejected(inbound_app, headers):
    response = post(inbound_app, track(), headers)
    assert response.status_code == 401
    assert response.is_json and response.json["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert nothing_stored(inbound_app)


def test_stored_key_identifies_its_workspace(inbound_app):
    from flask_refiner_segment.inbound.auth import rotate_key as rotate_inbound_key

    with inbound_app.app_context():
        key = rotate_inbound_key(_get_state(), "acme")
    assert post(inbound_app, identify(), segment_headers(key)).status_code == 200
    assert profile(inbound_app, workspace_id="acme")["traits"]["plan"] == "premium"
    assert profile(inbound_app) is None  # not in the default workspace
    # The same messageId in another workspace is another message.
    assert post(inbound_app, identify()).json["stored"] == 1


def test_config_key_is_not_rotated(inbound_app):
    from flask_refiner_segment.inbound.auth import rotate_key as rotate_inbound_key

    with inbound_app.app_context():
        with pytest.raises(ValueError, match="REFINER_SEGMENT_INBOUND_API_KEY"):
            rotate_inbound_key(_get_state(), "default")
    assert post(inbound_app, identify()).status_code == 200  # the config key works


def test_key_lookup_is_cached_and_rotation_applies_at_once(inbound_app):
    from flask_refiner_segment.inbound.auth import rotate_key as rotate_inbound_key

    with inbound_app.app_context():
        state = _get_state()
        old = rotate_inbound_key(state, "acme")
        engine = state.db.engine
    lookups = []

    def count(conn, cursor, statement, *args):
        if statement.startswith("SELECT") and "refiner_segment_workspace" in statement:
            lookups.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        assert post(inbound_app, identify(), segment_headers(old)).status_code == 200
        assert post(inbound_app, track(), segment_headers(old)).status_code == 200
        assert len(lookups) == 1  # the second request used the remembered key
        with inbound_app.app_context():
            new = rotate_inbound_key(_get_state(), "acme")
        assert post(inbound_app, track(), segment_headers(old)).status_code == 401
        assert post(inbound_app, track(), segment_headers(new)).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def _set_secret(app: Flask, secret: str) -> None:
    from flask_refiner_segment.inbound import auth

    with app.app_context():
        auth.set_shared_secret(_get_state(), "default", secret)


def test_x_signature(inbound_app):
    from .inbound_support import sign

    secret = "whsec-3b8e"
    _set_secret(inbound_app, secret)
    body = json.dumps(track()).encode()
    good = {**segment_headers(), "X-Signature": sign(secret, body)}
    assert post(inbound_app, body, good).status_code == 200
    for signature in (None, "", "00" * 20, sign("other", body), "zz"):
        headers = segment_headers()
        if signature is not None:
            headers["X-Signature"] = signature
        response = post(inbound_app, json.dumps(track("t-2")).encode(), headers)
        assert response.status_code == 401
        assert response.json["error"] == "bad_signature"
    # A batch is signed whole: the signature of the exact raw body.
    batch = json.dumps([track("b-1"), track("b-2")]).encode()
    signed = {**segment_headers(), "X-Signature": sign(secret, batch)}
    assert post(inbound_app, batch, signed).json["stored"] == 2
    assert counts(inbound_app)["refiner_segment_event"] == 3


def test_a_signature_of_part_of_the_body_admits_nothing(inbound_app):
    """A captured signed message cannot carry unsigned ones into the store."""
    from .inbound_support import sign

    secret = "whsec-3b8e"
    _set_secret(inbound_app, secret)
    captured = track("c-1")
    forged = identify(traits={"is_admin": True})
    body = json.dumps([captured, forged]).encode()
    for signed_part in (
        json.dumps(captured, separators=(",", ":"), ensure_ascii=False).encode(),
        json.dumps(captured).encode(),
        body[:-1],
    ):
        headers = {**segment_headers(), "X-Signature": sign(secret, signed_part)}
        response = post(inbound_app, body, headers)
        assert response.status_code == 401
        assert response.json["error"] == "bad_signature"
    assert counts(inbound_app)["refiner_segment_event"] == 0
    assert profile(inbound_app) is None


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


# -- storage details the segment engine relies on --------------------------------


def test_trait_projections_and_json_paths(inbound_app):
    traits = {
        "address": {"city": "San Francisco", "geo": {"lat": 37.7}},
        "logins": 5,
        "ltv": "1200.50",
        "zip": "094103",
        "vip": True,
        "nickname": None,
        "tags": ["a", "b"],
    }
    post(inbound_app, identify(traits=traits))
    model = inbound_app.extensions["refiner_segment"].tables.inbound.UserTrait
    db = inbound_app.extensions["test_db"]
    with inbound_app.app_context():
        rows = {
            r.key: (r.value_type, r.value_text, r.value_num)
            for r in db.session.execute(sa.select(model)).scalars()
        }
        city = db.session.execute(
            sa.select(model.user_id).where(
                # The dotted path "address.city": key "address", JSON path ("city",).
                model.key == "address",
                model.value[("city",)].as_string() == "San Francisco",
            )
        ).scalar_one()
        lat = db.session.execute(
            sa.select(model.value[("geo", "lat")].as_float()).where(
                model.key == "address"
            )
        ).scalar_one()
        many = db.session.execute(
            sa.select(model.user_id).where(model.key == "logins", model.value_num >= 5)
        ).scalar_one()
    assert city == USER and lat == 37.7 and many == USER
    assert rows["logins"] == ("number", "5", 5.0)
    assert rows["ltv"] == ("string", "1200.50", 1200.5)
    assert rows["zip"] == ("string", "094103", None)
    assert rows["vip"] == ("boolean", "true", None)
    assert rows["nickname"] == ("null", None, None)
    assert rows["tags"] == ("array", None, None)
    assert rows["address"] == ("object", None, None)
    assert profile(inbound_app)["traits"]["nickname"] is None


def test_unstorable_characters_are_replaced(inbound_app):
    body = (
        b'{"type": "identify", "userId": "u\\u0000x", "messageId": "nul",'
        b' "traits": {"k\\u0000": "a\\u0000b", "s": "\\ud800", "ok": "\\ud83d\\ude00"}}'
    )
    assert post(inbound_app, body).status_code == 200
    assert profile(inbound_app, "u\ufffdx")["traits"] == {
        "k\ufffd": "a\ufffdb",
        "s": "\ufffd",
        "ok": "\U0001f600",
    }


def test_large_batch(inbound_app):
    batch = [track(f"big-{i}", f"u{i % 37}", properties={"i": i}) for i in range(1100)]
    batch += [identify(f"big-id-{i}", f"u{i}", traits={"n": i}) for i in range(37)]
    response = post(inbound_app, {"batch": batch})  # ~900 KB, under the 1 MiB cap
    assert response.json["stored"] == 1137
    assert post(inbound_app, {"batch": batch}).json["duplicates"] == 1137
    assert counts(inbound_app)["refiner_segment_event"] == 1100


# -- retention -------------------------------------------------------------------


def test_prune_events_command(inbound_app):
    from flask.cli import AppGroup
    from flask_refiner_segment.inbound.cli import register

    group_cli = AppGroup("refiner-segment")
    register(group_cli)
    recent = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)
    recent_at = recent.strftime("%Y-%m-%dT%H:%M:%SZ")
    post(
        inbound_app,
        [
            track("old-t", at="2020-01-01T00:00:00Z"),
            page("old-p", at="2020-01-01T00:00:00Z"),
            track("new-t", at=recent_at),
            page("new-p", at=recent_at),
            identify("old-i", at="2020-01-01T00:00:00Z"),
        ],
    )
    seen = inbound_app.extensions["refiner_segment"].tables.inbound.InboundMessage
    db = inbound_app.extensions["test_db"]
    with inbound_app.app_context():
        db.session.execute(
            sa.update(seen)
            .where(seen.message_id.in_(["old-t", "old-p"]))
            .values(received_at=dt.datetime(2020, 1, 1, 0, 0, 5))
        )
        db.session.commit()
    runner = inbound_app.test_cli_runner()
    result = runner.invoke(group_cli, ["prune-events", "--older-than", "30"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 events, 1 views and 2 seen message ids." in result.output
    with inbound_app.app_context():
        assert [e["message_id"] for e in api.recent_events(USER)] == ["new-t"]
        assert profile(inbound_app)["traits"]  # traits are not events: kept
    result = runner.invoke(group_cli, ["prune-events"])  # default: 365 days
    assert "Deleted 0 events, 0 views" in result.output
    result = runner.invoke(group_cli, ["prune-events", "--older-than", "0"])
    assert "Deleted 1 events, 1 views and 0 seen message ids." in result.output
    result = runner.invoke(group_cli, ["prune-events", "--older-than", "-1"])
    assert result.exit_code == 2
    result = runner.invoke(group_cli, ["prune-events", "--older-than", "999999999"])
    assert "Deleted 0 events" in result.output


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
