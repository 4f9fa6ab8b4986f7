"""The inbound route's auth: API keys (Basic and Bearer, stored or from config,
cached, rotated) and the X-Signature shared secret.

Runs on SQLite and PostgreSQL (the ``database_url`` fixture).

The ``inbound_app`` fixture is test_inbound.py's.
"""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.state import get_state as _get_state

from .inbound_support import API_KEY
from .inbound_support import basic
from .inbound_support import counts
from .inbound_support import identify
from .inbound_support import nothing_stored
from .inbound_support import post
from .inbound_support import segment_headers
from .inbound_support import track
from .test_inbound import inbound_app as inbound_app  # a fixture
from .test_inbound import profile

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
