"""Hostile answers through recording, delivery and every segment condition, on
SQLite and PostgreSQL: NUL, lone surrogates, control characters, huge and
deeply nested values never break a page, a count or a delivery."""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment import SegmentRuleError
from flask_refiner_segment.segments import validate_rules
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from .conftest import drain
from .conftest import send_completion
from .helpers import examples

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(
        alphabet=st.sampled_from("\x00\x01\x7f\ud800\udfff\u2028é😀 a"), max_size=20
    ),
    st.just("\x00"),
    st.just("a\x00b"),
    st.just("\ud83d"),
)
SCALARS = st.one_of(
    HOSTILE_TEXT,
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(HOSTILE_TEXT, inner, max_size=3)
    ),
    max_leaves=8,
)
ANSWERS = st.dictionaries(HOSTILE_TEXT, VALUES, min_size=1, max_size=4)


def conditions(answers: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """Every kind of segment condition that reads delivered answers."""
    keys = [k for k in answers if k and "\x00" not in k][:2] or ["how_likely"]
    out: list[dict[str, t.Any]] = [
        {"kind": "survey_completed", "survey_id": "nps-2026"},
        {"kind": "nps_group", "value": "promoter"},
        {"kind": "nps_group", "value": "detractor", "survey_id": "nps-2026"},
    ]
    for key in keys:
        for op, value in (
            ("eq", "x"),
            ("neq", 1),
            ("contains", "a"),
            ("starts_with", "a"),
            ("in", ["a", 1]),
            ("gte", 0),
            ("lt", "2026-01-01"),
            ("exists", None),
            ("not_exists", None),
        ):
            cond = {"kind": "answer", "survey_id": "nps-2026", "question": key}
            cond["op"] = op
            if value is not None:
                cond["value"] = value
            out.append(cond)
    return out


@pytest.mark.faults
def test_hostile_answers_are_recorded_delivered_and_segmentable(
    app: Flask, segment: t.Any, redis_url: str
) -> None:
    ext = app.extensions["refiner_segment"].owner
    table = ext.Delivery.__table__
    seen = {"n": 0}

    @settings(
        max_examples=examples(25),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(answers=ANSWERS, traits=st.dictionaries(HOSTILE_TEXT, VALUES, max_size=3))
    def check(answers: dict[str, t.Any], traits: dict[str, t.Any]) -> None:
        seen["n"] += 1
        n = seen["n"]
        send_completion(app, n, answers=answers, user_id=f"u-{n}", user_traits=traits)
        with app.app_context():
            with ext.db.engine.connect() as conn:
                status = conn.execute(
                    sa.select(table.c.status, table.c.payload).where(
                        table.c.response_id == f"r-{n}"
                    )
                ).one()
            assert status.status in ("pending", "sent", "failed"), status
            if status.payload is not None:
                assert "\\u0000" not in status.payload  # PostgreSQL's JSONB refuses it
            for cond in conditions(answers):
                rules = {"match": "all", "conditions": [cond]}
                try:
                    validate_rules(rules)
                except SegmentRuleError:
                    continue  # a clear error for a key no rule may name
                assert ext.segment_count(rules) >= 0
                assert ext.is_member(f"u-{n}", rules) in (True, False)
        client = app.test_client()
        assert client.get("/integrations/segment/segments/").status_code in (200, 403)

    check()

    def counts() -> dict[str, int]:
        with app.app_context():
            return ext.status_counts()

    drain(app, redis_url, lambda: counts()["pending"] + counts()["sending"] == 0)
    final = counts()
    assert final["sent"] + final["failed"] == seen["n"]
    assert final["sent"] >= 1
