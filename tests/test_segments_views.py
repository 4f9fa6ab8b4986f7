"""The segments page: guard, CSRF, validation errors next to the field, preview."""

from __future__ import annotations

import datetime as dt
import json
import re
import typing as t

import pytest
from flask import Flask
from flask_refiner_segment.segments import service as api
from flask_refiner_segment.state import EXTENSION_KEY

from .inbound_support import close_app
from .test_segments import insert_data
from .test_segments import make_seg_app


@pytest.fixture
def page_app(tmp_path: t.Any) -> t.Iterator[Flask]:
    app = make_seg_app(f"sqlite:///{tmp_path / 'app.db'}")
    state = app.extensions[EXTENSION_KEY]
    app.url = state.config.url_prefix + "/segments"  # type: ignore[attr-defined]
    yield app
    close_app(app)


def token(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


def allow(app: Flask, allowed: bool = True) -> None:
    app.extensions[EXTENSION_KEY].owner.settings_guard(lambda: allowed)


RULES = {
    "match": "all",
    "conditions": [{"kind": "trait", "key": "plan", "op": "eq", "value": "pro"}],
}


def test_denied_without_guard_or_when_guard_says_no(page_app: Flask) -> None:
    client = page_app.test_client()
    for path in ("/", "/new", "/preview?rules={}"):
        assert client.get(page_app.url + path).status_code == 403
    allow(page_app, False)
    assert client.get(page_app.url + "/").status_code == 403
    assert client.post(page_app.url + "/new", data={}).status_code == 403


def test_csrf_is_required(page_app: Flask) -> None:
    allow(page_app)
    client = page_app.test_client()
    resp = client.post(
        page_app.url + "/new",
        data={
            "csrf_token": "forged",
            "name": "Pro",
            "rules": json.dumps(RULES),
            "action": "save",
        },
    )
    assert resp.status_code == 400
    assert "CSRF token is invalid" in resp.get_data(as_text=True)
    with page_app.app_context():
        assert api.list_segments() == []


def test_create_with_bad_rule_shows_error_then_preview_save_edit_delete(
    page_app: Flask,
) -> None:
    allow(page_app)
    insert_data(
        page_app, {"u1": {"plan": "pro"}, "u2": {"plan": "free"}, "u3": {"plan": "pro"}}
    )
    client = page_app.test_client()
    html = client.get(page_app.url + "/new").get_data(as_text=True)
    bad = {
        "match": "all",
        "conditions": [{"kind": "trait", "key": "plan", "op": "like", "value": "x"}],
    }
    resp = client.post(
        page_app.url + "/new",
        data={
            "csrf_token": token(html),
            "name": "Pro",
            "rules": json.dumps(bad),
            "action": "save",
        },
    )
    assert resp.status_code == 400
    body = resp.get_data(as_text=True)
    assert 'id="error-rules"' in body
    assert "conditions[0] (trait): unknown operator &#39;like&#39;" in body
    resp = client.post(
        page_app.url + "/new",
        data={
            "csrf_token": token(html),
            "name": "Pro",
            "rules": "{not json",
            "action": "save",
        },
    )
    assert "Not valid JSON" in resp.get_data(as_text=True)

    resp = client.post(
        page_app.url + "/new",
        data={
            "csrf_token": token(html),
            "name": "Pro",
            "rules": json.dumps(RULES),
            "action": "preview",
        },
    )
    body = resp.get_data(as_text=True)
    assert '<strong id="preview-count">2</strong>' in body
    assert "<li>u1</li><li>u3</li>" in body

    resp = client.post(
        page_app.url + "/new",
        data={
            "csrf_token": token(html),
            "name": "Pro",
            "rules": json.dumps(RULES),
            "action": "save",
        },
    )
    assert resp.status_code == 302
    with page_app.app_context():
        (seg,) = api.list_segments()
        seg_id = seg.id
    listing = client.get(page_app.url + "/").get_data(as_text=True)
    assert "Pro" in listing and '<td class="rs-count">2</td>' in listing

    edit_html = client.get(f"{page_app.url}/{seg_id}").get_data(as_text=True)
    assert "&#34;plan&#34;" in edit_html or "&quot;plan&quot;" in edit_html
    resp = client.post(
        f"{page_app.url}/{seg_id}",
        data={
            "csrf_token": token(edit_html),
            "name": "Free",
            "rules": json.dumps(
                {**RULES, "conditions": [{**RULES["conditions"][0], "value": "free"}]}
            ),
            "action": "save",
        },
    )
    assert resp.status_code == 302
    with page_app.app_context():
        assert api.count(seg_id) == 1

    assert (
        client.post(
            f"{page_app.url}/{seg_id}/delete", data={"csrf_token": "forged"}
        ).status_code
        == 400
    )
    assert (
        client.post(
            f"{page_app.url}/{seg_id}/delete", data={"csrf_token": token(listing)}
        ).status_code
        == 302
    )
    with page_app.app_context():
        assert api.list_segments() == []


def test_preview_endpoint(page_app: Flask) -> None:
    allow(page_app)
    insert_data(page_app, {f"u{i:02d}": {"plan": "pro"} for i in range(12)})
    client = page_app.test_client()
    data = client.get(
        page_app.url + "/preview", query_string={"rules": json.dumps(RULES)}
    ).get_json()
    assert data == {"count": 12, "sample": [f"u{i:02d}" for i in range(10)]}
    resp = client.get(
        page_app.url + "/preview",
        query_string={
            "rules": json.dumps(
                {
                    "match": "all",
                    "conditions": [
                        {"kind": "trait", "key": "n", "op": "gt", "value": "x"}
                    ],
                }
            )
        },
    )
    assert resp.status_code == 400
    assert "needs a number or an ISO date" in resp.get_json()["errors"][0]["message"]


def test_a_stored_rule_that_no_longer_validates_is_shown_not_a_500(
    page_app: Flask,
) -> None:
    """Rules saved under older checks (or by hand) never break a page."""
    import sqlalchemy as sa

    allow(page_app)
    state = page_app.extensions[EXTENSION_KEY]
    table = state.tables.segments.Segment.__table__
    rules = {
        "match": "all",
        "conditions": [
            {
                "kind": "event",
                "name": "Order Completed",
                "op": "at_least",
                "count": 1,
                "within_days": 800_000,
            }
        ],
    }
    with page_app.app_context(), state.db.engine.begin() as conn:
        now = dt.datetime(2026, 1, 1)
        new_id = conn.execute(
            sa.insert(table).values(
                workspace_id="default",
                name="Legacy",
                rules=rules,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
    client = page_app.test_client()
    listing = client.get(page_app.url + "/")
    assert listing.status_code == 200
    html = listing.get_data(as_text=True)
    assert "Legacy" in html and "within_days" in html
    edit = client.get(f"{page_app.url}/{new_id}")
    assert edit.status_code == 200
    assert "800000" in edit.get_data(as_text=True)
