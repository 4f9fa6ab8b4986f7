"""Segments: SQL evaluation on SQLite and PostgreSQL of trait, account, event,
survey-answer and NPS conditions.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import pytest
from flask import Flask

from .test_segments import NOW
from .test_segments import cond
from .test_segments import delivery
from .test_segments import insert_data
from .test_segments import members
from .test_segments import response
from .test_segments import seg_app as seg_app  # a fixture

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
