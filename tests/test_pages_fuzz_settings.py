"""Hostile input through the settings page: the settings form, the webhook-secret
form, the buttons (test, retry-failed, rotate-key) and bad CSRF tokens, on
SQLite and PostgreSQL. The pages must never answer 5xx, and a page must still
render after anything they accepted.

The senders and hostile strategies are test_pages_fuzz.py's (where the
approach is described).
"""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.segments import service as api
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from .test_pages_fuzz import ACTIONS
from .test_pages_fuzz import FORM
from .test_pages_fuzz import SEGMENTS
from .test_pages_fuzz import URL
from .test_pages_fuzz import Pair
from .test_pages_fuzz import allow
from .test_pages_fuzz import form_body
from .test_pages_fuzz import form_pairs
from .test_pages_fuzz import fuzz
from .test_pages_fuzz import hostile
from .test_pages_fuzz import no_500
from .test_pages_fuzz import page_is_200
from .test_pages_fuzz import post_form
from .test_pages_fuzz import query
from .test_pages_fuzz import settings_pairs
from .test_pages_fuzz import short_text

# -- the settings page -----------------------------------------------------------


@pytest.fixture
def page_app(make_app: t.Callable[..., Flask]) -> Flask:
    """Key and host editable on the page, CSRF off so validation is reached."""
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        WTF_CSRF_ENABLED=False,
    )
    allow(app)
    return app


VALID_SETTINGS = [
    ("region", "us"),
    ("track_event", "Survey Completed"),
    ("send_all", "all"),
]


@fuzz(80)
@given(pairs=settings_pairs())
# Found by this test: a NUL in the write key's last four characters (its hint).
@example(pairs=[("write_key", "\x00"), *VALID_SETTINGS])
@example(pairs=[("write_key", "wk_live_9f3a\x00"), *VALID_SETTINGS])
def test_settings_form_never_500(page_app: Flask, pairs: list[Pair]) -> None:
    client = page_app.test_client()
    response = no_500(post_form(client, URL, pairs), pairs)
    if response.status_code == 302:
        page_is_200(client, URL, pairs)


SECRET_FIELDS: dict[str, st.SearchStrategy[t.Any]] = {
    "secret": st.sampled_from(["", "whsec_abc123", "  padded secret  ", "s" * 200]),
    "clear": st.sampled_from(["y", "", "on", "false"]),
}


@fuzz(30)
@given(pairs=form_pairs(SECRET_FIELDS))
def test_webhook_secret_form_never_500(page_app: Flask, pairs: list[Pair]) -> None:
    client = page_app.test_client()
    response = no_500(post_form(client, URL + "webhook-secret", pairs), pairs)
    if response.status_code == 302:
        page_is_200(client, URL, pairs)


CONTENT_TYPES = [
    FORM,
    FORM + "; charset=latin-1",
    FORM + "; charset=utf-16",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    'multipart/form-data; boundary=""',
    "application/json",
    "text/plain",
    "",
    "\x00/\x00",
]
junk_bodies = (
    st.binary(max_size=300)
    | st.lists(st.tuples(hostile, hostile), max_size=4).map(form_body)
    | st.sampled_from(
        [
            b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--xyz--',
            b'--xyz\r\nContent-Disposition: form-data; name="f"; filename="\x00"',
            b"a=%ZZ&%=&&==&b",
            b'{"csrf_token": null}',
            b"&" * 5000,
        ]
    )
)


@pytest.fixture
def action_app(make_app: t.Callable[..., Flask]) -> Flask:
    """Write key and data plane (the Segment stand-in) from config, CSRF off:
    the test button reaches the stand-in, never the internet."""
    app = make_app(WTF_CSRF_ENABLED=False)
    allow(app)
    return app


@fuzz(40)
@given(
    path=st.sampled_from([*ACTIONS, "", "webhook-secret"]),
    body=junk_bodies,
    content_type=st.sampled_from(CONTENT_TYPES)
    | st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40),
    args=st.lists(
        st.tuples(st.sampled_from(["status", "page", "x"]) | short_text, hostile),
        max_size=3,
    ),
)
def test_buttons_and_page_take_junk(
    action_app: Flask,
    path: str,
    body: bytes,
    content_type: str,
    args: list[Pair],
) -> None:
    client = action_app.test_client()
    what = (path, body, content_type)
    response = no_500(
        client.post(URL + path, data=body, headers={"Content-Type": content_type}),
        what,
    )
    if response.status_code == 302:
        page_is_200(client, URL, what)
    for extra in ([], [("page", 10**400)], args):
        qs = "&".join(f"{query(k)}={query(v)}" for k, v in extra)
        page_is_200(client, URL + ("?" + qs if qs else ""), qs)


@pytest.fixture
def csrf_app(make_app: t.Callable[..., Flask]) -> Flask:
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        WTF_CSRF_ENABLED=True,
    )
    allow(app)
    with app.app_context():
        api.create_segment("Kept", {"match": "all", "conditions": []})
    return app


def _snapshot(app: Flask) -> list[t.Any]:
    state = app.extensions["refiner_segment"]
    with app.app_context(), state.db.engine.connect() as conn:
        return [
            conn.execute(sa.select(table).order_by(*table.primary_key)).all()
            for table in (
                state.tables.outbound.Workspace.__table__,
                state.tables.segments.Segment.__table__,
            )
        ]


@fuzz(20)
@given(
    path=st.sampled_from(
        [
            *(URL + p for p in (*ACTIONS, "", "webhook-secret")),
            SEGMENTS + "/new",
            SEGMENTS + "/1",
            SEGMENTS + "/1/delete",
        ]
    ),
    token=st.none() | hostile,
    pairs=settings_pairs(),
)
def test_bad_csrf_token_is_400_and_changes_nothing(
    csrf_app: Flask, path: str, token: t.Any, pairs: list[Pair]
) -> None:
    client = csrf_app.test_client()
    client.get(URL)  # opens the session: a real token exists, ours is not it
    before = _snapshot(csrf_app)
    fields = [("name", "Renamed"), ("rules", '{"match":"any","conditions":[]}')]
    if token is not None:
        fields.append(("csrf_token", token))
    response = no_500(post_form(client, path, [*fields, *pairs]), (path, token))
    assert response.status_code in (400, 413), response.status_code
    assert _snapshot(csrf_app) == before
