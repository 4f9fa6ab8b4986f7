"""The rule builder: rows of form fields <-> rules, and the edit page in the
builder's mode (errors on their rows, add/remove, JSON view, live preview)."""

from __future__ import annotations

import re
import typing as t

import pytest
from flask import Flask
from flask_refiner_segment.segments import builder as b
from flask_refiner_segment.segments import service as api
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from .helpers import examples
from .test_pages_fuzz import fuzz
from .test_pages_fuzz import hostile
from .test_pages_fuzz import no_500
from .test_pages_fuzz import post_form
from .test_segments import insert_data
from .test_segments import seg_app  # noqa: F401 - a fixture
from .test_segments_property import rules_st
from .test_segments_views import allow
from .test_segments_views import page_app  # noqa: F401 - a fixture
from .test_segments_views import token


def form_fields(builder: b.Builder) -> dict[str, str]:
    """What the page posts for ``builder``."""
    fields = {"editor": "builder", "match": builder.match}
    for item in builder.items:
        rows = item.rows if isinstance(item, b.Group) else [item]
        if isinstance(item, b.Group):
            fields[f"g-{item.id}-match"] = item.match
        for row in rows:
            for name in b.FIELDS:
                fields[f"c-{row.id}-{name}"] = getattr(row, name)
    return fields


def _has_where(rules: dict[str, t.Any]) -> bool:
    for c in rules["conditions"]:
        if "conditions" in c and _has_where(c):
            return True
        if c.get("where") is not None:
            return True
    return False


@settings(max_examples=examples(300), deadline=None)
@given(rules=rules_st)
def test_rules_round_trip_through_the_rows(rules: dict[str, t.Any]) -> None:
    builder = b.to_builder(rules)
    if _has_where(rules):
        assert builder is None  # edited as JSON
        return
    assert builder is not None, rules
    assert b.to_rules(b.read_form(form_fields(builder))) == b.normal(rules)


@pytest.mark.parametrize(
    ("typed", "value"),
    [
        ("pro", "pro"),
        ("9", 9),
        ("-2.5", -2.5),
        ("true", True),
        ('"10"', "10"),
        ('"true"', "true"),
        ("2026-01-31", "2026-01-31"),
        ('"', '"'),
        ("  spaced  ", "spaced"),
    ],
)
def test_typed_values(typed: str, value: t.Any) -> None:
    assert b.read_value(typed) == value
    if typed == typed.strip():
        assert b.read_value(b.show_value(value)) == value


def test_errors_go_to_their_rows() -> None:
    by_row, rest = b.row_errors(
        [
            ("conditions[0] (trait)", "unknown operator 'x'"),
            ("conditions[0] (trait)", "needs a value"),
            ("conditions[2].conditions[1] (event)", "'count' must be an integer"),
            ("conditions[2].", "'match' must be 'all' or 'any'"),
            ("rules", "values must be finite"),
        ]
    )
    assert by_row == {
        "0": ["unknown operator 'x'", "needs a value"],
        "2.1": ["'count' must be an integer"],
        "2": ["'match' must be 'all' or 'any'"],
    }
    assert rest == ["values must be finite"]


def _post(client: t.Any, url: str, fields: dict[str, str]) -> t.Any:
    return client.post(url, data=fields)


def test_build_a_segment_row_by_row(page_app: Flask) -> None:  # noqa: F811
    allow(page_app)
    insert_data(page_app, {"u1": {"plan": "pro"}, "u2": {"plan": "free"}})
    client = page_app.test_client()
    html = client.get(page_app.url + "/new").get_data(as_text=True)
    assert 'id="row-0"' in html and 'name="editor" value="builder"' in html
    base = {"csrf_token": token(html), "name": "Pro or Globex", "editor": "builder"}
    base |= {"match": "any", "c-0-kind": "trait", "c-0-key": "plan", "c-0-op": "eq"}
    base["c-0-value"] = "pro"

    # Add a group, then a second row in it: the page comes back with them.
    html = _post(client, page_app.url + "/new", {**base, "action": "add-group"}).text
    assert 'id="group-1"' in html and 'id="row-1.0"' in html
    fields = {**base, "g-1-match": "all", "c-1.0-kind": "account_trait"}
    fields |= {"c-1.0-key": "plan", "c-1.0-op": "eq", "c-1.0-value": "9"}
    html = _post(client, page_app.url + "/new", {**fields, "action": "add:1"}).text
    assert 'id="row-1.1"' in html
    assert 'value="9"' in html  # what was typed is kept

    # Save with an invalid row: 400, the message on that row only.
    fields |= {"c-1.1-kind": "event", "c-1.1-key": "Order", "c-1.1-op": "at_least"}
    fields |= {"c-1.1-value": "many", "c-1.1-days": "0"}
    response = _post(client, page_app.url + "/new", {**fields, "action": "save"})
    assert response.status_code == 400
    errors = re.search(r'id="errors-1\.1"[^>]*>(.*?)</ul>', response.text).group(1)
    assert "&#39;count&#39; must be an integer" in errors
    assert "&#39;within_days&#39; must be an integer" in errors
    assert errors.count("<li>") == 2  # one per line
    assert re.search(r'id="errors-0"[^>]*></ul>', response.text)
    with page_app.app_context():
        assert api.list_segments() == []

    # Remove the bad row, save: the rules are what the rows say.
    html = _post(client, page_app.url + "/new", {**fields, "action": "remove:1.1"}).text
    assert 'id="row-1.1"' not in html
    del fields["c-1.1-kind"], fields["c-1.1-key"], fields["c-1.1-op"]
    del fields["c-1.1-value"], fields["c-1.1-days"]
    response = _post(client, page_app.url + "/new", {**fields, "action": "save"})
    assert response.status_code == 302
    with page_app.app_context():
        (saved,) = api.list_segments()
        assert saved.rules == {
            "match": "any",
            "conditions": [
                {"kind": "trait", "key": "plan", "op": "eq", "value": "pro"},
                {
                    "match": "all",
                    "conditions": [
                        {"kind": "account_trait", "key": "plan", "op": "eq", "value": 9}
                    ],
                },
            ],
        }
        assert api.count(saved.id) == 1
    listing = client.get(page_app.url + "/").text
    assert "Segment “Pro or Globex” created." in listing

    # Edit it: the rows come back; as JSON and back again.
    html = client.get(f"{page_app.url}/{saved.id}").text
    assert 'id="row-1.0"' in html and 'id="rules-json"' in html
    fields = {**fields, "csrf_token": token(html)}
    html = _post(
        client, f"{page_app.url}/{saved.id}", {**fields, "action": "json"}
    ).text
    assert 'name="editor" value="json"' in html and 'id="row-0"' not in html
    assert "account_trait" in html
    text = re.search(r'<textarea[^>]*name="rules"[^>]*>(.*?)</textarea>', html, re.S)
    back = {"csrf_token": fields["csrf_token"], "name": "x", "editor": "json"}
    back["rules"] = text.group(1).replace("&#34;", '"').replace("&quot;", '"')
    html = _post(
        client, f"{page_app.url}/{saved.id}", {**back, "action": "builder"}
    ).text
    assert 'name="editor" value="builder"' in html and 'id="row-1.0"' in html


def test_rules_the_rows_cannot_show_open_as_json(page_app: Flask) -> None:  # noqa: F811
    allow(page_app)
    where = {"key": "total", "op": "gt", "value": 10}
    rules = {
        "match": "all",
        "conditions": [
            {
                "kind": "event",
                "name": "Order",
                "op": "at_least",
                "count": 1,
                "where": where,
            }
        ],
    }
    with page_app.app_context():
        seg = api.create_segment("Big orders", rules)
    html = page_app.test_client().get(f"{page_app.url}/{seg.id}").text
    assert 'name="editor" value="json"' in html
    assert 'id="json-note"' in html and "where" in html


def test_live_preview_answers_counts_and_row_errors(seg_app: Flask) -> None:  # noqa: F811
    """On SQLite and PostgreSQL: the preview runs the rows' SQL."""
    allow(seg_app)
    insert_data(seg_app, {"u1": {"plan": "pro"}, "u2": {"plan": "pro"}, "u3": {}})
    url = "/integrations/segment/segments"
    client = seg_app.test_client()
    html = client.get(url + "/new").text
    fields = {"csrf_token": token(html), "editor": "builder", "match": "all"}
    fields |= {
        "c-0-kind": "trait",
        "c-0-key": "plan",
        "c-0-op": "eq",
        "c-0-value": "pro",
    }
    data = client.post(url + "/preview", data=fields).get_json()
    assert data["count"] == 2 and data["sample"] == ["u1", "u2"]
    assert '"plan"' in data["rules"]
    fields |= {"c-1-kind": "trait", "c-1-key": "", "c-1-op": "gt", "c-1-value": "x"}
    response = client.post(url + "/preview", data=fields)
    assert response.status_code == 400
    assert list(response.get_json()["errors"]) == ["1"]
    assert len(response.get_json()["errors"]["1"]) == 2


@fuzz(100)
@given(
    fields=st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(
                    ["match", "editor", "action", "g-0-match", "g-1-match"]
                ),
                st.builds(
                    "c-{}-{}".format,
                    st.sampled_from(["0", "1", "1.0", "1.1", "00", "9" * 30, "x"]),
                    st.sampled_from([*b.FIELDS, "other"]),
                ),
                hostile,
            ),
            st.one_of(
                st.sampled_from(
                    [*b.KIND_LABELS, *b.OP_LABELS, "all", "any", "builder", "json"]
                ),
                st.sampled_from(["add", "add:1", "add-group", "remove:1.0", "preview"]),
                hostile,
            ),
        ),
        max_size=14,
    )
)
def test_builder_form_never_500(page_app: Flask, fields: list[t.Any]) -> None:  # noqa: F811
    allow(page_app)
    page_app.config["WTF_CSRF_ENABLED"] = False
    client = page_app.test_client()
    pairs = [("editor", "builder"), ("name", "Fuzzed"), *fields]
    no_500(post_form(client, page_app.url + "/new", pairs), fields)
    no_500(post_form(client, page_app.url + "/preview", pairs), fields)
