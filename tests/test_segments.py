"""Segments: rule validation, SQL evaluation on SQLite and PostgreSQL, CRUD API."""

from __future__ import annotations

import datetime as dt
import json
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.core.completion import canonical_json
from flask_refiner_segment.core.completion import completion_nps_score
from flask_refiner_segment.segments import service as api
from flask_refiner_segment.segments.rules import SegmentRuleError
from flask_refiner_segment.segments.rules import validate_rules

from . import hostapp
from .inbound_support import close_app

NOW = dt.datetime(2026, 11, 1, 12, 0, 0)
WS = "default"


def make_seg_app(database_url: str) -> Flask:
    app = hostapp.create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REFINER_SEGMENT_REDIS_URL": "redis://127.0.0.1:1/0",
        }
    )

    db = app.extensions["test_db"]
    with app.app_context():
        db.create_all()
    return app


@pytest.fixture
def seg_app(database_url: str) -> t.Iterator[Flask]:
    app = make_seg_app(database_url)
    yield app
    close_app(app)


def _kind(v: t.Any) -> tuple[str, str | None, float | None]:
    if v is None:
        return "null", None, None
    if isinstance(v, bool):
        return "boolean", "true" if v else "false", None
    if isinstance(v, (int, float)):
        return "number", str(v), float(v)
    if isinstance(v, str):
        return "string", v, None
    return ("array" if isinstance(v, list) else "object"), None, None


def insert_data(
    app: Flask,
    profiles: dict[str, dict[str, t.Any]],
    *,
    accounts: dict[str, dict[str, t.Any]] | None = None,
    memberships: list[tuple[str, str]] = (),  # type: ignore[assignment]
    events: list[tuple[str, str, dict, dt.datetime]] = (),  # type: ignore[assignment]
    deliveries: list[dict[str, t.Any]] = (),  # type: ignore[assignment]
    responses: list[dict[str, t.Any]] = (),  # type: ignore[assignment]
) -> None:
    """Insert rows as the inbound route stores them (Core, fast)."""
    from flask_refiner_segment.state import EXTENSION_KEY

    state = app.extensions[EXTENSION_KEY]
    m = state.tables.inbound
    with app.app_context(), state.db.engine.begin() as conn:
        if profiles:
            conn.execute(
                sa.insert(m.Profile.__table__),
                [
                    {
                        "workspace_id": WS,
                        "user_id": u,
                        "first_seen_at": NOW,
                        "last_seen_at": NOW,
                        "updated_at": NOW,
                    }
                    for u in profiles
                ],
            )
        rows = []
        for u, traits in profiles.items():
            for k, v in traits.items():
                typ, text, num = _kind(v)
                rows.append(
                    {
                        "workspace_id": WS,
                        "user_id": u,
                        "key": k,
                        "value": v,
                        "value_type": typ,
                        "value_text": text,
                        "value_num": num,
                        "value_at": NOW,
                        "updated_at": NOW,
                    }
                )
        if rows:
            conn.execute(sa.insert(m.UserTrait.__table__), rows)
        if accounts:
            conn.execute(
                sa.insert(m.Account.__table__),
                [
                    {
                        "workspace_id": WS,
                        "group_id": g,
                        "first_seen_at": NOW,
                        "last_seen_at": NOW,
                        "updated_at": NOW,
                    }
                    for g in accounts
                ],
            )
            rows = []
            for g, traits in accounts.items():
                for k, v in traits.items():
                    typ, text, num = _kind(v)
                    rows.append(
                        {
                            "workspace_id": WS,
                            "group_id": g,
                            "key": k,
                            "value": v,
                            "value_type": typ,
                            "value_text": text,
                            "value_num": num,
                            "value_at": NOW,
                            "updated_at": NOW,
                        }
                    )
            if rows:
                conn.execute(sa.insert(m.AccountTrait.__table__), rows)
        if memberships:
            conn.execute(
                sa.insert(m.Membership.__table__),
                [
                    {
                        "workspace_id": WS,
                        "user_id": u,
                        "group_id": g,
                        "first_seen_at": NOW,
                        "last_seen_at": NOW,
                    }
                    for u, g in memberships
                ],
            )
        if events:
            conn.execute(
                sa.insert(m.Event.__table__),
                [
                    {
                        "workspace_id": WS,
                        "user_id": u,
                        "message_id": f"m{i}",
                        "name": n,
                        "properties": p,
                        "timestamp": ts,
                        "received_at": NOW,
                    }
                    for i, (u, n, p, ts) in enumerate(events)
                ],
            )
        if deliveries:
            conn.execute(
                sa.insert(state.tables.outbound.Delivery.__table__), deliveries
            )
        if responses:
            conn.execute(
                sa.insert(state.tables.outbound.SurveyResponse.__table__), responses
            )


def _payload(
    user_id: str,
    survey_id: str,
    answers: dict,
    response_id: str,
    created_at: dt.datetime,
) -> dict[str, t.Any]:
    """A normalized completion, as the receiver records it."""
    return {
        "user_id": user_id,
        "survey": {
            "id": survey_id,
            "name": survey_id.upper(),
            "questions": [
                {
                    "key": k,
                    "type": "nps" if k == "how_likely" else None,
                    "scope": "user",
                    "trait": None,
                    "text": k,
                }
                for k in answers
            ],
        },
        "response": {
            "id": response_id,
            "completed_at": created_at.isoformat() + "Z",
            "answers": answers,
        },
        "account": None,
        "user_traits": {},
    }


def delivery(
    user_id: str,
    survey_id: str,
    answers: dict,
    *,
    response_id: str,
    created_at: dt.datetime = NOW,
    status: str = "sent",
) -> dict[str, t.Any]:
    """A delivery row of one completion, as the receiver inserts it."""
    payload = _payload(user_id, survey_id, answers, response_id, created_at)
    return {
        "workspace_id": WS,
        "response_id": response_id,
        "survey_id": survey_id,
        "user_id": user_id,
        "content_hash": response_id.ljust(64, "0")[:64],
        "payload": json.dumps(payload, sort_keys=True, separators=(",", ":")),
        "status": status,
        "nps_score": completion_nps_score(payload),
        "attempts": 1,
        "created_at": created_at,
        "updated_at": created_at,
    }


def response(
    user_id: str,
    survey_id: str,
    answers: dict,
    *,
    response_id: str,
    created_at: dt.datetime = NOW,
    updated_at: dt.datetime | None = None,
) -> dict[str, t.Any]:
    """The ``refiner_segment_response`` row of a completion's latest content."""
    payload = _payload(user_id, survey_id, answers, response_id, created_at)
    return {
        "workspace_id": WS,
        "response_id": response_id,
        "survey_id": survey_id,
        "user_id": user_id,
        "content_hash": response_id.ljust(64, "0")[:64],
        "answers": canonical_json(answers),
        "nps_score": completion_nps_score(payload),
        "created_at": created_at,
        "updated_at": updated_at or created_at,
    }


def members(app: Flask, rules: dict) -> list[str]:
    with app.app_context():
        return api.members(rules, per_page=1000)


def cond(kind: str = "trait", **kw: t.Any) -> dict:
    return {"match": "all", "conditions": [{"kind": kind, **kw}]}


# --- validation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"match": "some", "conditions": []}, "'match' must be 'all' or 'any'"),
        ({"match": "all"}, "'conditions' must be a list"),
        (cond("color", key="x"), "conditions[0]: unknown kind 'color'"),
        (
            cond(key="plan", op="like", value="x"),
            "conditions[0] (trait): unknown operator 'like'",
        ),
        (
            cond(key="plan", op="gt", value="abc"),
            "operator 'gt' needs a number or an ISO date",
        ),
        (
            cond(key="plan", op="in", value="pro"),
            "operator 'in' needs a non-empty list",
        ),
        (
            cond(key="plan", op="contains", value=3),
            "operator 'contains' needs a non-empty string",
        ),
        (cond(key="plan", op="eq"), "operator 'eq' needs a 'value'"),
        (cond(key="", op="exists"), "needs a non-empty string 'key'"),
        (cond(key="a..b", op="exists"), "needs a non-empty string 'key'"),
        (cond("event", name="X", op="more", count=1), "unknown operator 'more'"),
        (
            cond("event", name="X", op="at_least", count=-1),
            "'count' must be an integer from 0 to",
        ),
        (
            cond("event", name="X", op="at_least", count=1, within_days=0),
            "'within_days'",
        ),
        (
            cond(
                "event",
                name="X",
                op="at_least",
                count=1,
                where={"key": "p", "op": "gt", "value": "z"},
            ),
            "conditions[0] (event) where: operator 'gt'",
        ),
        (cond("survey_completed"), "needs a non-empty string 'survey_id'"),
        (cond("nps_group", value="fan"), "'promoter', 'passive' or 'detractor'"),
        (cond("nps_group", value="passive", survey_id=""), "'survey_id' must be"),
        (
            cond("answer", survey_id="s", op="eq", value=1),
            "needs a non-empty string 'question'",
        ),
        (
            {
                "match": "all",
                "conditions": [
                    {"match": "any", "conditions": [{"match": "all", "conditions": []}]}
                ],
            },
            "groups nest only one level",
        ),
    ],
)
def test_validation_messages(rules: dict, message: str) -> None:
    with pytest.raises(SegmentRuleError) as info:
        validate_rules(rules)
    assert message in str(info.value)


def test_valid_rules_pass() -> None:
    rules = {
        "match": "any",
        "conditions": [
            {"kind": "trait", "key": "address.city", "op": "eq", "value": "Paris"},
            {
                "match": "all",
                "conditions": [
                    {
                        "kind": "event",
                        "name": "Order Completed",
                        "op": "at_least",
                        "count": 2,
                        "within_days": 30,
                        "where": {"key": "total", "op": "gte", "value": 10},
                    },
                    {
                        "kind": "answer",
                        "survey_id": "nps",
                        "question": "how_likely",
                        "op": "gte",
                        "value": 9,
                    },
                ],
            },
        ],
    }
    assert validate_rules(rules) is rules


# --- evaluation on SQLite and PostgreSQL -----------------------------------

PROFILES = {
    "u1": {
        "plan": "pro",
        "seats": 10,
        "beta": True,
        "signup": "2024-03-01",
        "address": {"city": "Paris", "zip": 75001},
        "email": "ann@acme.io",
    },
    "u2": {
        "plan": "free",
        "seats": 1,
        "beta": False,
        "signup": "2025-07-15",
        "address": {"city": "Berlin"},
        "email": "bob@example.com",
    },
    "u3": {"plan": None, "seats": "10", "email": "cy@acme.io"},
    "u4": {},
}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"key": "plan", "op": "eq", "value": "pro"}, ["u1"]),
        ({"key": "plan", "op": "neq", "value": "pro"}, ["u2"]),
        ({"key": "seats", "op": "eq", "value": 10}, ["u1"]),
        ({"key": "beta", "op": "eq", "value": True}, ["u1"]),
        ({"key": "beta", "op": "eq", "value": False}, ["u2"]),
        ({"key": "email", "op": "contains", "value": "@acme"}, ["u1", "u3"]),
        ({"key": "email", "op": "contains", "value": "@ACME"}, []),
        ({"key": "email", "op": "starts_with", "value": "bo"}, ["u2"]),
        ({"key": "plan", "op": "in", "value": ["pro", "free"]}, ["u1", "u2"]),
        ({"key": "seats", "op": "in", "value": [1, 2]}, ["u2"]),
        ({"key": "seats", "op": "gt", "value": 1}, ["u1"]),
        ({"key": "seats", "op": "gte", "value": 1}, ["u1", "u2"]),
        ({"key": "seats", "op": "lt", "value": 10}, ["u2"]),
        ({"key": "seats", "op": "lte", "value": 10}, ["u1", "u2"]),
        ({"key": "signup", "op": "gt", "value": "2025-01-01"}, ["u2"]),
        ({"key": "signup", "op": "lte", "value": "2024-03-01"}, ["u1"]),
        ({"key": "plan", "op": "exists"}, ["u1", "u2"]),
        ({"key": "plan", "op": "not_exists"}, ["u3", "u4"]),
        ({"key": "address.city", "op": "eq", "value": "Paris"}, ["u1"]),
        ({"key": "address.city", "op": "starts_with", "value": "Ber"}, ["u2"]),
        ({"key": "address.zip", "op": "gte", "value": 75000}, ["u1"]),
        ({"key": "address.zip", "op": "exists"}, ["u1"]),
        ({"key": "address.zip", "op": "not_exists"}, ["u2", "u3", "u4"]),
        ({"key": "address.city", "op": "neq", "value": "Paris"}, ["u2"]),
        ({"key": "address.city", "op": "in", "value": ["Berlin", "Rome"]}, ["u2"]),
    ],
)
def test_trait_operators(seg_app: Flask, condition: dict, expected: list[str]) -> None:
    insert_data(seg_app, PROFILES)
    assert members(seg_app, cond(**condition)) == expected


def test_account_traits_and_nesting(seg_app: Flask) -> None:
    insert_data(
        seg_app,
        {"u1": {"plan": "pro"}, "u2": {"plan": "free"}, "u3": {}},
        accounts={
            "a1": {"tier": "enterprise", "mrr": 900},
            "a2": {"tier": "smb", "mrr": 50},
        },
        memberships=[("u1", "a2"), ("u2", "a1"), ("u3", "a2"), ("u1", "a1")],
    )
    assert members(
        seg_app, cond("account_trait", key="tier", op="eq", value="enterprise")
    ) == ["u1", "u2"]
    assert members(seg_app, cond("account_trait", key="mrr", op="lt", value=100)) == [
        "u1",
        "u3",
    ]
    assert members(seg_app, cond("account_trait", key="tier", op="not_exists")) == []
    rules = {
        "match": "any",
        "conditions": [
            {"kind": "trait", "key": "plan", "op": "eq", "value": "free"},
            {
                "match": "all",
                "conditions": [
                    {
                        "kind": "account_trait",
                        "key": "tier",
                        "op": "eq",
                        "value": "smb",
                    },
                    {"kind": "trait", "key": "plan", "op": "not_exists"},
                ],
            },
        ],
    }
    assert members(seg_app, rules) == ["u2", "u3"]
    assert members(seg_app, {"match": "all", "conditions": []}) == ["u1", "u2", "u3"]
    assert members(seg_app, {"match": "any", "conditions": []}) == []


def test_event_counts_within_days_and_where(seg_app: Flask) -> None:
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # naive UTC, as stored
    old = now - dt.timedelta(days=40)
    recent = now - dt.timedelta(days=2)
    insert_data(
        seg_app,
        {"u1": {}, "u2": {}, "u3": {}},
        events=[
            (
                "u1",
                "Order Completed",
                {"total": 50, "shipping": {"country": "FR"}},
                recent,
            ),
            ("u1", "Order Completed", {"total": 5}, recent),
            ("u1", "Order Completed", {"total": 70}, old),
            ("u2", "Order Completed", {"total": 20}, old),
            ("u2", "Signed Up", {}, recent),
        ],
    )

    def ev(**kw: t.Any) -> dict:
        return cond("event", name="Order Completed", **kw)

    assert members(seg_app, ev(op="at_least", count=1)) == ["u1", "u2"]
    assert members(seg_app, ev(op="at_least", count=3)) == ["u1"]
    assert members(seg_app, ev(op="at_least", count=0)) == ["u1", "u2", "u3"]
    assert members(seg_app, ev(op="at_least", count=2, within_days=30)) == ["u1"]
    assert members(seg_app, ev(op="at_least", count=1, within_days=30)) == ["u1"]
    assert members(seg_app, ev(op="at_most", count=0, within_days=30)) == ["u2", "u3"]
    assert members(seg_app, ev(op="at_most", count=1)) == ["u2", "u3"]
    assert members(
        seg_app,
        ev(op="at_least", count=2, where={"key": "total", "op": "gte", "value": 20}),
    ) == ["u1"]
    assert members(
        seg_app,
        ev(
            op="at_least",
            count=1,
            where={"key": "shipping.country", "op": "eq", "value": "FR"},
        ),
    ) == ["u1"]
    assert members(
        seg_app,
        ev(op="at_least", count=1, where={"key": "shipping", "op": "not_exists"}),
    ) == ["u1", "u2"]


def test_survey_conditions_use_latest_recorded_answer(seg_app: Flask) -> None:
    t0 = NOW - dt.timedelta(days=10)
    later = NOW + dt.timedelta(hours=2)
    insert_data(
        seg_app,
        {"u1": {}, "u2": {}, "u3": {}, "u4": {}, "u5": {}},
        responses=[
            response("u1", "nps", {"how_likely": 3}, response_id="r1", created_at=t0),
            response("u1", "nps", {"how_likely": 10}, response_id="r2", created_at=NOW),
            response("u2", "nps", {"how_likely": 10}, response_id="r3", created_at=t0),
            response("u2", "nps", {"how_likely": 6}, response_id="r4", created_at=NOW),
            # u3's delivery failed at Segment: u3 completed the survey all the same.
            response("u3", "nps", {"how_likely": 10}, response_id="r5"),
            response(
                "u3",
                "onboarding",
                {"role": "Engineer", "tools": ["Jira"]},
                response_id="r6",
            ),
            response("u4", "onboarding", {"role": "Designer"}, response_id="r7"),
            # a later response to the survey without that answer keeps the older one
            response(
                "u4",
                "onboarding",
                {"other": 1},
                response_id="r8",
                created_at=NOW + dt.timedelta(hours=1),
            ),
            # Latest by when the content was recorded, not by when the response
            # was first seen: r10, created first, was edited last (2 -> 9).
            response("u5", "nps", {"how_likely": 2}, response_id="r9", created_at=NOW),
            response(
                "u5",
                "nps",
                {"how_likely": 9},
                response_id="r10",
                created_at=t0,
                updated_at=later,
            ),
        ],
    )
    completed_nps = cond("survey_completed", survey_id="nps")
    assert members(seg_app, completed_nps) == ["u1", "u2", "u3", "u5"]
    assert members(seg_app, cond("survey_completed", survey_id="onboarding")) == [
        "u3",
        "u4",
    ]
    assert members(
        seg_app,
        cond("answer", survey_id="nps", question="how_likely", op="gte", value=9),
    ) == ["u1", "u3", "u5"]
    assert members(
        seg_app,
        cond("answer", survey_id="nps", question="how_likely", op="lte", value=6),
    ) == ["u2"]
    assert members(
        seg_app,
        cond(
            "answer",
            survey_id="onboarding",
            question="role",
            op="in",
            value=["Engineer", "Designer"],
        ),
    ) == ["u3", "u4"]
    assert members(
        seg_app,
        cond("answer", survey_id="onboarding", question="role", op="not_exists"),
    ) == ["u1", "u2", "u5"]
    assert members(
        seg_app,
        cond("answer", survey_id="onboarding", question="tools", op="exists"),
    ) == ["u3"]
    # Latest NPS group: u1 went 3 -> 10, u2 went 10 -> 6, u5's latest is 9.
    assert members(seg_app, cond("nps_group", value="promoter")) == ["u1", "u3", "u5"]
    assert members(seg_app, cond("nps_group", value="detractor")) == ["u2"]
    assert members(seg_app, cond("nps_group", value="passive")) == []
    only_nps = cond("nps_group", value="promoter", survey_id="nps")
    assert members(seg_app, only_nps) == ["u1", "u3", "u5"]
    assert members(seg_app, cond("nps_group", value="promoter", survey_id="x")) == []


def test_survey_conditions_ignore_deliveries(seg_app: Flask) -> None:
    """Deliveries without a response row (pruned or not) count for nothing."""
    insert_data(
        seg_app,
        {"u1": {}, "u2": {}},
        deliveries=[delivery("u1", "nps", {"how_likely": 10}, response_id="r1")],
        responses=[response("u2", "nps", {"how_likely": 10}, response_id="r2")],
    )
    for rules in (
        cond("survey_completed", survey_id="nps"),
        cond("answer", survey_id="nps", question="how_likely", op="exists"),
        cond("answer", survey_id="nps", question="how_likely", op="eq", value=10),
        cond("nps_group", value="promoter"),
    ):
        assert members(seg_app, rules) == ["u2"], rules


def test_api_crud_is_member_count_members(seg_app: Flask) -> None:
    insert_data(seg_app, {f"u{i:02d}": {"n": i} for i in range(30)})
    with seg_app.app_context():
        seg = api.create_segment("Big", cond(key="n", op="gte", value=10))
        with pytest.raises(SegmentRuleError, match="already exists"):
            api.create_segment("Big", cond(key="n", op="exists"))
        with pytest.raises(SegmentRuleError, match="unknown operator"):
            api.create_segment("Bad", cond(key="n", op="nope"))
        assert api.count(seg) == 20
        assert api.count(seg.id) == 20
        assert api.is_member("u15", seg) is True
        assert api.is_member("u05", seg) is False
        assert api.is_member("nobody", seg) is False
        assert api.members(seg, page=1, per_page=8) == [f"u{i}" for i in range(10, 18)]
        assert api.members(seg, page=3, per_page=8) == [f"u{i}" for i in range(26, 30)]
        api.update_segment(
            seg.id, name="Bigger", rules=cond(key="n", op="gte", value=25)
        )
        assert api.get_segment(seg.id).name == "Bigger"
        assert api.count(seg.id) == 5
        assert [s.name for s in api.list_segments()] == ["Bigger"]
        assert api.get_segment(seg.id, workspace_id="other") is None
        assert api.delete_segment(seg.id) is True
        assert api.list_segments() == []


def test_every_read_is_scoped_to_the_workspace_asked_for(seg_app: Flask) -> None:
    """A host passing user-supplied segment ids leaks nothing across tenants."""
    insert_data(seg_app, {f"u{i}": {"n": i} for i in range(5)})  # workspace "default"
    ext = seg_app.extensions["refiner_segment"].owner
    with seg_app.app_context():
        theirs = ext.create_segment("All", cond(key="n", op="exists"))
        assert ext.segment_count(theirs.id) == 5  # in its own workspace
        for call in (
            lambda: ext.segment_count(theirs.id, workspace_id="tenant-b"),
            lambda: ext.segment_members(theirs.id, workspace_id="tenant-b"),
            lambda: ext.is_member("u1", theirs.id, workspace_id="tenant-b"),
            lambda: ext.segment_count(theirs, workspace_id="tenant-b"),
        ):
            with pytest.raises(LookupError, match="no such segment"):
                call()
        assert ext.get_segment(theirs.id, workspace_id="tenant-b") is None
        assert ext.delete_segment(theirs.id, workspace_id="tenant-b") is False
        with pytest.raises(LookupError):
            ext.update_segment(theirs.id, name="x", workspace_id="tenant-b")
        # A rules dict is evaluated in the workspace asked for: tenant-b is empty.
        assert ext.segment_count(cond(key="n", op="exists"), "tenant-b") == 0


EVENT = {"name": "Order Completed", "op": "at_least", "count": 1}
OUT_OF_RANGE: list[tuple[dict, str]] = [
    (cond("event", **{**EVENT, "within_days": 800_000}), "'within_days'"),
    (cond("event", **{**EVENT, "count": 10**12}), "'count'"),
    (cond(key="n", op="gte", value=10**400), "finite number"),
    (cond(key="n", op="eq", value=float("nan")), "finite number"),
    (cond(key="n", op="lt", value=float("-inf")), "finite number"),
    (cond(key="n", op="in", value=[1, float("inf")]), "finite number"),
    (cond(key="n", op="in", value=list(range(1001))), "at most 1000"),
    (cond(key="a\x00b", op="exists"), "control characters"),
    (cond(key="n", op="eq", value="a\x00b"), "control characters"),
    (cond("event", **{**EVENT, "name": "x\x00"}), "control characters"),
    (cond(key="n" * 300, op="exists"), "at most 255"),
    (cond(key="\ud83d", op="exists"), "lone surrogates"),
    (cond(key="n", op="eq", value="a\udfffb"), "lone surrogates"),
    (cond(key="n", op="eq", value="v" * 5000), "at most 1000"),
]


@pytest.mark.parametrize(("rules", "message"), OUT_OF_RANGE)
def test_out_of_range_rules_are_refused(rules: dict, message: str) -> None:
    with pytest.raises(SegmentRuleError) as info:
        validate_rules(rules)
    assert message in str(info.value)


def test_saved_rules_never_crash_the_compiler(seg_app: Flask) -> None:
    """The widest values validation lets through compile and run on both databases."""
    insert_data(seg_app, {"u1": {"n": 1}})
    ext = seg_app.extensions["refiner_segment"].owner
    widest = [
        cond("event", **{**EVENT, "within_days": 36_500, "count": 2**31 - 1}),
        cond(key="n", op="gte", value=1.7e308),
        cond(key="n", op="lt", value=-(10**300)),
        cond(key="n", op="in", value=list(range(1000))),
        cond(key="n" * 255, op="eq", value="v" * 1000),
        cond(key="n", op="gte", value="9999-12-31"),
    ]
    with seg_app.app_context():
        for rules in widest:
            validate_rules(rules)
            assert ext.segment_count(rules) in (0, 1)
            assert ext.is_member("u1", rules) in (True, False)
