"""Segments: the CRUD API and its workspace scoping, on SQLite and PostgreSQL.

The segment test data helpers (``seg_app``, ``insert_data``, ``delivery``,
``response``, ``members``, ``cond``) live here; the other segment tests import
them. Rule validation: test_segments_rules.py; SQL evaluation of each kind of
condition: test_segments_evaluation.py.
"""

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


# --- the CRUD API ----------------------------------------------------------


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
