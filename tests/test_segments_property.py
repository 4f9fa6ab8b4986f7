"""Property test: the SQL evaluation of random rules equals a Python reference."""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.core.completion import canonical_json
from flask_refiner_segment.segments import service as api
from flask_refiner_segment.state import EXTENSION_KEY
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from .helpers import examples
from .inbound_support import close_app
from .test_segments import WS
from .test_segments import insert_data
from .test_segments import make_seg_app

MISSING = object()
STRS = ["pro", "free", "pr", "2024-01-05", "2025-06-30"]
scalar = st.one_of(st.sampled_from(STRS), st.integers(0, 5), st.booleans(), st.none())
trait_value = st.one_of(scalar, st.fixed_dictionaries({}, optional={"city": scalar}))
traits = st.dictionaries(st.sampled_from(["plan", "n", "flag", "address"]), trait_value)
KEYS = ["plan", "n", "flag", "address", "address.city", "missing"]


def op_value() -> st.SearchStrategy[tuple[str, t.Any]]:
    sv = st.sampled_from(STRS)
    num = st.integers(0, 5)
    return st.one_of(
        st.tuples(st.sampled_from(["eq", "neq"]), st.one_of(sv, num, st.booleans())),
        st.tuples(
            st.sampled_from(["contains", "starts_with"]),
            st.sampled_from(["pr", "o", "20", "x"]),
        ),
        st.tuples(st.just("in"), st.lists(st.one_of(sv, num), min_size=1, max_size=3)),
        st.tuples(
            st.sampled_from(["gt", "gte", "lt", "lte"]),
            st.one_of(num, st.sampled_from(["2024-01-05", "2025-01-01"])),
        ),
        st.tuples(st.sampled_from(["exists", "not_exists"]), st.none()),
    )


def value_cond(kind: str) -> st.SearchStrategy[dict]:
    return st.builds(
        lambda k, ov: {"kind": kind, "key": k, "op": ov[0], "value": ov[1]},
        st.sampled_from(KEYS),
        op_value(),
    )


event_cond = st.builds(
    lambda name, op, n, d, w: {
        "kind": "event",
        "name": name,
        "op": op,
        "count": n,
        "within_days": d,
        "where": w,
    },
    st.sampled_from(["A", "B"]),
    st.sampled_from(["at_least", "at_most"]),
    st.integers(0, 3),
    st.sampled_from([None, 7, 30]),
    st.one_of(
        st.none(),
        st.builds(lambda ov: {"key": "total", "op": ov[0], "value": ov[1]}, op_value()),
    ),
)
SURVEYS = ["s1", "s2"]
QUESTIONS = ["q1", "q2", "a.b"]
survey_cond = st.one_of(
    st.builds(
        lambda s: {"kind": "survey_completed", "survey_id": s},
        st.sampled_from(SURVEYS),
    ),
    st.builds(
        lambda s, q, ov: {
            "kind": "answer",
            "survey_id": s,
            "question": q,
            "op": ov[0],
            "value": ov[1],
        },
        st.sampled_from(SURVEYS),
        st.sampled_from(QUESTIONS),
        op_value(),
    ),
    st.builds(
        lambda v, s: {"kind": "nps_group", "value": v, "survey_id": s},
        st.sampled_from(["promoter", "passive", "detractor"]),
        st.sampled_from([None, *SURVEYS]),
    ),
)
leaf = st.one_of(
    value_cond("trait"), value_cond("account_trait"), event_cond, survey_cond
)
group = st.builds(
    lambda m, cs: {"match": m, "conditions": cs},
    st.sampled_from(["all", "any"]),
    st.lists(leaf, max_size=3),
)
rules_st = st.builds(
    lambda m, cs: {"match": m, "conditions": cs},
    st.sampled_from(["all", "any"]),
    st.lists(st.one_of(leaf, leaf, group), max_size=4),
)

events_st = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.sampled_from(["A", "B"]),
        st.one_of(st.just({}), st.builds(lambda n: {"total": n}, st.one_of(scalar))),
        st.sampled_from([1, 10, 40]),
    ),
    max_size=15,
)
#: Responses: (user, survey, answers, NPS score, minutes after the first one
#: that the content was recorded). Listed in id order, so that ties in time go
#: to the later one.
responses_st = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.sampled_from(SURVEYS),
        st.dictionaries(st.sampled_from(QUESTIONS), scalar, max_size=3),
        st.one_of(st.none(), st.integers(0, 10)),
        st.integers(0, 3),
    ),
    max_size=10,
)


# --- the Python reference --------------------------------------------------


def _num(x: t.Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _eq(x: t.Any, v: t.Any) -> bool:
    if isinstance(v, bool):
        return isinstance(x, bool) and x == v
    if isinstance(v, str):
        return isinstance(x, str) and x == v
    return _num(x) and float(x) == float(v)


def ref_value(x: t.Any, op: str, v: t.Any) -> bool:
    present = x is not MISSING and x is not None
    if op == "exists":
        return present
    if op == "not_exists":
        return not present
    if op == "eq":
        return _eq(x, v)
    if op == "neq":
        return present and not _eq(x, v)
    if op == "contains":
        return isinstance(x, str) and v in x
    if op == "starts_with":
        return isinstance(x, str) and x.startswith(v)
    if op == "in":
        return any(_eq(x, e) for e in v)
    if isinstance(v, str):
        if not isinstance(x, str):
            return False
        a, b = x, v
    else:
        if not _num(x):
            return False
        a, b = float(x), float(v)
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def lookup(d: dict, key: str) -> t.Any:
    cur: t.Any = d
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def ref_cond(c: dict, user: str, data: dict) -> bool:
    if "kind" not in c:
        return ref_group(c, user, data)
    if c["kind"] == "trait":
        return ref_value(
            lookup(data["profiles"][user], c["key"]), c["op"], c.get("value")
        )
    if c["kind"] in ("survey_completed", "answer", "nps_group"):
        return ref_survey(c, user, data)
    if c["kind"] == "account_trait":
        vals = [
            lookup(data["accounts"][g], c["key"])
            for u, g in data["memberships"]
            if u == user
        ]
        if c["op"] == "not_exists":
            return all(ref_value(x, "not_exists", None) for x in vals)
        return any(ref_value(x, c["op"], c.get("value")) for x in vals)
    n = 0
    for u, name, props, days in data["events"]:
        if u != user or name != c["name"]:
            continue
        if c["within_days"] is not None and days > c["within_days"]:
            continue
        w = c["where"]
        if w is not None and not ref_value(
            lookup(props, w["key"]), w["op"], w.get("value")
        ):
            continue
        n += 1
    return n >= c["count"] if c["op"] == "at_least" else n <= c["count"]


def ref_survey(c: dict, user: str, data: dict) -> bool:
    """Survey conditions read each response's latest recorded content; the
    newest is the latest ``updated_at``, then the highest id (list order)."""
    mine = [
        (minutes, i, survey, answers, nps)
        for i, (u, survey, answers, nps, minutes) in enumerate(data["responses"])
        if u == user
    ]
    newest_first = sorted(mine, reverse=True)
    if c["kind"] == "survey_completed":
        return any(r[2] == c["survey_id"] for r in mine)
    if c["kind"] == "nps_group":
        scores = [
            r[4]
            for r in newest_first
            if r[4] is not None and c["survey_id"] in (None, r[2])
        ]
        low, high = {"promoter": (9, 10), "passive": (7, 8), "detractor": (0, 6)}[
            c["value"]
        ]
        return bool(scores) and low <= scores[0] <= high
    answered = [
        r[3][c["question"]]
        for r in newest_first
        if r[2] == c["survey_id"] and r[3].get(c["question"]) is not None
    ]
    if c["op"] == "exists":
        return bool(answered)
    if c["op"] == "not_exists":
        return not answered
    return bool(answered) and ref_value(answered[0], c["op"], c.get("value"))


def ref_group(g: dict, user: str, data: dict) -> bool:
    results = [ref_cond(c, user, data) for c in g["conditions"]]
    return all(results) if g["match"] == "all" else any(results)


# --- the test --------------------------------------------------------------


@pytest.fixture
def prop_app(database_url: str) -> t.Iterator[Flask]:
    app = make_seg_app(database_url)
    yield app
    close_app(app)


def _clear(app: Flask) -> None:
    state = app.extensions[EXTENSION_KEY]
    m = state.tables.inbound
    with app.app_context(), state.db.engine.begin() as conn:
        for model in (
            m.Profile,
            m.UserTrait,
            m.Account,
            m.AccountTrait,
            m.Membership,
            m.Event,
            state.tables.outbound.SurveyResponse,
        ):
            conn.execute(sa.delete(model.__table__))


@settings(
    max_examples=examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    profiles=st.lists(traits, min_size=1, max_size=6),
    accounts=st.lists(traits, min_size=2, max_size=2),
    memberships=st.sets(st.tuples(st.integers(0, 5), st.integers(0, 1))),
    events=events_st,
    responses=responses_st,
    rules=st.lists(rules_st, min_size=3, max_size=3),
)
def test_sql_matches_python_reference(
    prop_app: Flask,
    profiles: list,
    accounts: list,
    memberships: set,
    events: list,
    responses: list,
    rules: list,
) -> None:
    _clear(prop_app)
    users = {f"u{i}": tr for i, tr in enumerate(profiles)}
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # naive UTC, as stored
    data = {
        "profiles": users,
        "accounts": {f"a{i}": tr for i, tr in enumerate(accounts)},
        "memberships": [(f"u{u}", f"a{g}") for u, g in memberships if f"u{u}" in users],
        "events": [(f"u{u}", n, p, d) for u, n, p, d in events if f"u{u}" in users],
        "responses": [(f"u{u}", *rest) for u, *rest in responses],
    }
    insert_data(
        prop_app,
        users,
        accounts=data["accounts"],
        memberships=data["memberships"],
        events=[
            (u, n, p, now - dt.timedelta(days=d, hours=-1 if d < 7 else 1))
            for u, n, p, d in data["events"]
        ],
        responses=[
            {
                "id": i + 1,
                "workspace_id": WS,
                "response_id": f"r{i}",
                "survey_id": survey,
                "user_id": u,
                "content_hash": "0" * 64,
                "answers": canonical_json(answers),
                "nps_score": nps,
                "created_at": now,
                "updated_at": now + dt.timedelta(minutes=minutes),
            }
            for i, (u, survey, answers, nps, minutes) in enumerate(data["responses"])
        ],
    )
    with prop_app.app_context():
        for r in rules:
            expected = sorted(u for u in users if ref_group(r, u, data))
            assert api.members(r, per_page=100) == expected, r
            assert api.count(r) == len(expected)
            for u in users:
                assert api.is_member(u, r) is (u in expected), (u, r)
