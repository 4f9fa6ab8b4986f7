"""Hostile input through the segment rule editor, the rule preview and segment
ids of any size, on SQLite and PostgreSQL: junk names, rule sets almost valid
or not JSON at all, huge integers, NaN, deep nesting. The pages must never
answer 5xx.

The senders and hostile strategies are test_pages_fuzz.py's (where the
approach is described).
"""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
from flask import Flask
from flask_refiner_segment.segments import service as api
from flask_refiner_segment.segments.rules import EVENT_OPS
from flask_refiner_segment.segments.rules import KINDS
from flask_refiner_segment.segments.rules import NPS_GROUPS
from flask_refiner_segment.segments.rules import VALUE_OPS
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

from .test_pages_fuzz import SEGMENTS
from .test_pages_fuzz import Pair
from .test_pages_fuzz import _deep
from .test_pages_fuzz import _dumps
from .test_pages_fuzz import allow
from .test_pages_fuzz import fuzz
from .test_pages_fuzz import hostile
from .test_pages_fuzz import huge_ints
from .test_pages_fuzz import json_scalars
from .test_pages_fuzz import no_500
from .test_pages_fuzz import page_is_200
from .test_pages_fuzz import pieces
from .test_pages_fuzz import post_form
from .test_pages_fuzz import query
from .test_pages_fuzz import short_text
from .test_pages_fuzz import tainted
from .test_pages_fuzz import weighted
from .test_segments import NOW
from .test_segments import delivery
from .test_segments import insert_data

# -- the segment rule editor -----------------------------------------------------

key_text = st.lists(
    st.sampled_from(["a", "b", ".", '"', "'", "$", "[", "]", "*", "\\"]) | pieces,
    min_size=1,
    max_size=12,
).map("".join)
#: Keys the checker accepts, with the characters JSON paths quote or escape.
valid_keys = st.sampled_from(
    ["plan", "score", "address.city", 'address.q"x.y', "address..x", "tags", "none"]
) | st.from_regex(r"""\A[a-z"'$\[\]*\\ ]{1,6}(\.[a-z"'$\[\]*\\ -]{1,6}){0,3}\Z""")
keys = valid_keys | valid_keys | key_text


json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(short_text, inner, max_size=4)
    ),
    max_leaves=12,
)


extras = st.dictionaries(
    short_text,
    json_values | st.integers(50, 300).map(_deep),
    max_size=2,
)
opt = st.none() | json_scalars


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, t.Any]:
    """A condition with a random kind, operator and value (often almost valid)."""
    cond: dict[str, t.Any] = {
        "kind": draw(st.sampled_from(KINDS) | short_text | json_scalars),
        "op": draw(st.sampled_from(VALUE_OPS + EVENT_OPS) | json_scalars),
    }
    if draw(st.booleans()):
        cond["key"] = draw(keys | json_scalars)
    if draw(st.booleans()):
        cond["value"] = draw(
            json_scalars
            | st.sampled_from(NPS_GROUPS)
            | st.lists(json_scalars, max_size=4)
            | st.lists(st.integers() | short_text, min_size=999, max_size=1001)
            | json_values
        )
    for name, values in (
        ("name", st.sampled_from(["Order Completed", ""]) | short_text),
        ("survey_id", st.sampled_from(["nps", "csat"]) | short_text),
        ("question", st.sampled_from(["how_likely", "role", 'a"b']) | key_text),
        ("count", st.integers(-2, 5) | huge_ints | st.floats() | st.booleans()),
        ("within_days", st.integers(-1, 40_000) | huge_ints | st.floats()),
    ):
        if draw(st.booleans()):
            cond[name] = draw(values | opt)
    if draw(st.integers(0, 3)) == 0:
        cond["where"] = draw(
            st.fixed_dictionaries(
                {"key": keys, "op": st.sampled_from(VALUE_OPS)},
                optional={"value": json_scalars | st.lists(json_scalars, max_size=3)},
            )
            | json_values
        )
    cond.update(draw(extras))
    return cond


finite = (
    st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([10**300, -(2**63), 2**31 - 1])
)
valid_values = st.sampled_from(["pro", "free", "2026-01-01", 'a"b']) | finite
valid_conditions = st.one_of(
    st.builds(
        lambda k, op, v: {"kind": "trait", "key": k, "op": op, "value": v},
        keys,
        st.sampled_from(["eq", "neq", "gt", "lte", "contains", "starts_with"]),
        valid_values | st.booleans(),
    ),
    st.builds(
        lambda k, op: {"kind": "account_trait", "key": k, "op": op},
        keys,
        st.sampled_from(["exists", "not_exists"]),
    ),
    st.builds(
        lambda k, vs: {"kind": "trait", "key": k, "op": "in", "value": vs},
        keys,
        st.lists(valid_values, min_size=1, max_size=5),
    ),
    st.builds(
        lambda op, n, d, w: {
            "kind": "event",
            "name": "Order Completed",
            "op": op,
            "count": n,
            "within_days": d,
            "where": w,
        },
        st.sampled_from(EVENT_OPS),
        st.integers(0, 3) | st.just(2**31 - 1),
        st.none() | st.integers(1, 36_500),
        st.none()
        | st.builds(
            lambda k, v: {"key": k, "op": "gte", "value": v}, keys, valid_values
        ),
    ),
    st.builds(
        lambda s: {"kind": "survey_completed", "survey_id": s},
        st.sampled_from(["nps", "csat"]) | key_text,
    ),
    st.builds(
        lambda q, op, v: {
            "kind": "answer",
            "survey_id": "nps",
            "question": q,
            "op": op,
            "value": v,
        },
        st.sampled_from(["how_likely", "role", 'a"b']) | key_text,
        st.sampled_from(["gte", "lt", "eq"]),
        valid_values,
    ),
    st.builds(
        lambda g, s: {"kind": "nps_group", "value": g, **s},
        st.sampled_from(NPS_GROUPS),
        st.just({}) | st.builds(lambda s: {"survey_id": s}, key_text),
    ),
).flatmap(lambda c: extras.map(lambda e: {**e, **c}))


def groups(
    inner: st.SearchStrategy[t.Any], valid: bool = False
) -> st.SearchStrategy[dict[str, t.Any]]:
    match = st.sampled_from(["all", "any"])
    return st.fixed_dictionaries(
        {
            "match": match if valid else match | json_scalars,
            "conditions": st.lists(inner, max_size=4),
        }
    ).flatmap(lambda g: extras.map(lambda e: {**e, **g}))


#: Rule sets the checker mostly accepts (unknown keys carry anything) ...
valid_rule_sets = groups(valid_conditions | groups(valid_conditions, True), True)
#: ... and rule sets it mostly refuses.
rule_sets = valid_rule_sets | groups(
    valid_conditions
    | conditions()
    | groups(valid_conditions | conditions() | json_values)
    | json_values
)


rules_text = weighted(
    (4, st.builds(_dumps, valid_rule_sets, st.booleans())),
    (2, st.builds(_dumps, rule_sets, st.booleans())),
    (1, st.builds(_dumps, json_values, st.booleans())),
    (1, hostile),
)
bad_rules_text = st.one_of(
    st.sampled_from(["", "{", "null", "NaN", "[]", '{"match": "all"}', "\x00{}"]),
    st.integers(10, 3000).map(lambda d: "[" * d + "]" * d),
    st.integers(10, 3000).map(lambda d: '{"a":' * d + "1" + "}" * d),
    st.integers(10, 3000).map(
        lambda d: '{"match": "all", "conditions": [], "x": ' + "[" * d + "]" * d + "}"
    ),
)
#: Names that repeat (a name is unique in its workspace) and names that don't.
valid_names = weighted(
    (1, st.sampled_from(["Pro users", " Pro users ", "Seg"])),
    (3, st.from_regex(r"\A[A-Za-z][A-Za-z ]{9,30}\Z")),
)
names = weighted(
    (5, valid_names), (1, tainted(valid_names)), (1, hostile), (1, st.none())
)


@pytest.fixture
def seg_app(make_app: t.Callable[..., Flask]) -> Flask:
    """CSRF off; a few users with nested traits, events and answered surveys, so
    every generated rule runs against rows (SQL errors show only on rows)."""
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        WTF_CSRF_ENABLED=False,
    )
    allow(app)
    nested = {"city": "Paris", 'q"x': {"y": 1}, "n": 1e300, "": [1, "a"]}
    insert_data(
        app,
        {
            "u1": {"plan": "pro", "score": 7, "address": nested, "tags": ["a", "b"]},
            "u2": {"plan": "free", "score": -1.5, "flag": True, "none": None},
            "u3": {},
        },
        accounts={"g1": {"plan": "pro", "address": nested}},
        memberships=[("u1", "g1"), ("u2", "g1")],
        events=[
            ("u1", "Order Completed", {"total": 10, "address": nested}, NOW),
            ("u2", "Order Completed", {"total": "x"}, NOW - dt.timedelta(days=400)),
        ],
        deliveries=[
            delivery("u1", "nps", {"how_likely": 9, 'a"b': "x"}, response_id="r1"),
            delivery("u2", "nps", {"how_likely": 3, "role": None}, response_id="r2"),
        ],
    )
    with app.app_context():
        api.create_segment("Kept", {"match": "all", "conditions": []})
    return app


def _segment_ids(app: Flask) -> list[int]:
    with app.app_context():
        return [s.id for s in api.list_segments()]


EMPTY_RULES = '{"match": "all", "conditions": []}'
INFINITE_RULES = '{"match": "all", "conditions": [], "x": Infinity}'
NAN_RULES = (
    '{"match": "any", "conditions": [{"kind": "trait", "key": "plan", "op": "exists",'
    ' "note": NaN}]}'
)
DEEP_RULES = "[" * 50_000 + "]" * 50_000


@fuzz(100)
@given(
    target=weighted(
        (12, st.sampled_from(["new", "new", "kept"])),
        (1, st.just("missing")),
        # Larger ids: test_segment_ids_of_any_size.
        (1, st.integers(0, 2**31 - 1).map(str)),
    ),
    name=names,
    rules=weighted((8, rules_text), (1, bad_rules_text), (1, st.none())),
    action=weighted((6, st.sampled_from([None, "save", "preview"])), (1, hostile)),
    extra=st.lists(st.tuples(hostile, hostile), max_size=2),
)
# Found by this test (and kept as explicit examples):
@example(target="new", name="\x00", rules=EMPTY_RULES, action="save", extra=[])
@example(target="kept", name="Pro\x00", rules=EMPTY_RULES, action=None, extra=[])
@example(target="new", name="Inf", rules=INFINITE_RULES, action="save", extra=[])
@example(target="kept", name="NaN", rules=NAN_RULES, action=None, extra=[])
@example(target="new", name="Deep", rules=DEEP_RULES, action="save", extra=[])
@example(target="kept", name="Deep", rules=DEEP_RULES, action="preview", extra=[])
def test_segment_editor_never_500(
    seg_app: Flask,
    target: str,
    name: t.Any,
    rules: t.Any,
    action: t.Any,
    extra: list[Pair],
) -> None:
    client = seg_app.test_client()
    before = _segment_ids(seg_app)
    path = {"new": "/new", "kept": f"/{before[0]}", "missing": "/999999"}.get(
        target, f"/{target}"
    )
    pairs = [
        (k, v)
        for k, v in (("name", name), ("rules", rules), ("action", action))
        if v is not None
    ]
    what = (path, pairs)
    no_500(post_form(client, SEGMENTS + path, [*pairs, *extra]), what)
    no_500(client.get(SEGMENTS + path), what)
    page_is_200(client, SEGMENTS + "/", what)
    after = _segment_ids(seg_app)
    # Every page of a saved segment renders, whatever its rules.
    for seg_id in after if after != before or target == "kept" else ():
        page_is_200(client, f"{SEGMENTS}/{seg_id}", what)
    for seg_id in after[1:] if len(after) > 12 else ():  # keep the list short
        response = post_form(client, f"{SEGMENTS}/{seg_id}/delete", [])
        assert response.status_code == 302, response.status_code


@fuzz(80)
@given(
    rules=weighted((3, rules_text), (1, bad_rules_text)),
    junk=st.lists(st.tuples(hostile, hostile), max_size=2),
)
@example(rules=DEEP_RULES, junk=[])  # found by this test
def test_preview_never_500(seg_app: Flask, rules: str, junk: list[Pair]) -> None:
    client = seg_app.test_client()
    qs = "&".join(f"{query(k)}={query(v)}" for k, v in [("rules", rules), *junk])
    response = no_500(client.get(f"{SEGMENTS}/preview?{qs}"), rules)
    assert response.is_json, response.get_data()[:300]
    body = response.get_json()
    if response.status_code == 200:
        assert set(body) == {"count", "sample"}
    else:
        assert response.status_code == 400 and body["errors"]


@fuzz(15)
@given(seg_id=st.integers(0, 10**30), delete=st.booleans())
# Found by this test: past PostgreSQL's integer, and past SQLite's.
@example(seg_id=2**31, delete=False)
@example(seg_id=2**31, delete=True)
@example(seg_id=2**63, delete=False)
@example(seg_id=2**63, delete=True)
def test_segment_ids_of_any_size(seg_app: Flask, seg_id: int, delete: bool) -> None:
    client = seg_app.test_client()
    path = f"{SEGMENTS}/{seg_id}" + ("/delete" if delete else "")
    response = no_500(client.post(path) if delete else client.get(path), path)
    assert response.status_code in (200, 302, 404), response.status_code
