"""Segments: rule validation, its messages and its limits, and that the widest
rules it lets through compile and run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from flask import Flask
from flask_refiner_segment.segments.rules import SegmentRuleError
from flask_refiner_segment.segments.rules import validate_rules

from .test_segments import cond
from .test_segments import insert_data
from .test_segments import seg_app as seg_app  # a fixture

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


# --- limits ----------------------------------------------------------------

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
