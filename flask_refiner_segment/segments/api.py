"""Python API: CRUD of saved segments and membership (app context needed).

``workspace_id=None`` means the default workspace. ``segment`` arguments take
a Segment row, a segment id, or a rules dict.
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

from ..extension import _get_state
from .compile import Compiler
from .rules import SegmentRuleError
from .rules import validate_rules


def _models(state: t.Any) -> t.Any:
    models = getattr(state.ext, "segment_models", None)
    if models is None:
        raise RuntimeError(
            "segments are not wired: set ext.segment_models = make_segment_models(db)"
        )
    return models


def _ws(state: t.Any, workspace_id: str | None) -> str:
    return workspace_id or state.config.default_workspace


def _rules_and_ws(
    segment: t.Any, workspace_id: str | None
) -> tuple[dict[str, t.Any], str]:
    state = _get_state()
    if isinstance(segment, dict):
        return validate_rules(segment), _ws(state, workspace_id)
    if isinstance(segment, int):
        segment = state.db.session.get(_models(state).Segment, segment)
        if segment is None:
            raise LookupError("no such segment")
    return validate_rules(segment.rules), segment.workspace_id


def members_query(
    workspace_id: str | None, rules: dict[str, t.Any]
) -> sa.Select[t.Any]:
    """The SELECT of member user ids for ``rules`` (validated here)."""
    state = _get_state()
    validate_rules(rules)
    return Compiler(
        state.ext.inbound,
        state.models.Delivery,
        state.db.engine.dialect.name,
        _ws(state, workspace_id),
    ).members_query(rules)


def is_member(user_id: str, segment: t.Any, workspace_id: str | None = None) -> bool:
    rules, ws = _rules_and_ws(segment, workspace_id)
    q = members_query(ws, rules)
    q = q.where(q.selected_columns.user_id == str(user_id)).limit(1)
    with _get_state().db.engine.connect() as conn:
        return conn.execute(q).first() is not None


def count(segment: t.Any, workspace_id: str | None = None) -> int:
    rules, ws = _rules_and_ws(segment, workspace_id)
    sub = members_query(ws, rules).subquery()
    with _get_state().db.engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(sub)).scalar_one()
        )


def members(
    segment: t.Any, page: int = 1, per_page: int = 50, workspace_id: str | None = None
) -> list[str]:
    """One page of member user ids, ordered by user id."""
    rules, ws = _rules_and_ws(segment, workspace_id)
    q = members_query(ws, rules)
    q = (
        q.order_by(q.selected_columns.user_id)
        .limit(per_page)
        .offset((max(page, 1) - 1) * per_page)
    )
    with _get_state().db.engine.connect() as conn:
        return list(conn.execute(q).scalars())


def create_segment(
    name: str, rules: dict[str, t.Any], workspace_id: str | None = None
) -> t.Any:
    state = _get_state()
    if not isinstance(name, str) or not name.strip():
        raise SegmentRuleError([("name", "a name is required")])
    validate_rules(rules)
    ws = _ws(state, workspace_id)
    Segment = _models(state).Segment
    if (
        state.db.session.scalar(
            sa.select(Segment.id).where(
                Segment.workspace_id == ws, Segment.name == name.strip()
            )
        )
        is not None
    ):
        raise SegmentRuleError(
            [("name", f"a segment named {name.strip()!r} already exists")]
        )
    seg = Segment(workspace_id=ws, name=name.strip(), rules=rules)
    state.db.session.add(seg)
    state.db.session.commit()
    return seg


def get_segment(segment_id: int, workspace_id: str | None = None) -> t.Any:
    state = _get_state()
    seg = state.db.session.get(_models(state).Segment, segment_id)
    if seg is None or seg.workspace_id != _ws(state, workspace_id):
        return None
    return seg


def list_segments(workspace_id: str | None = None) -> list[t.Any]:
    state = _get_state()
    Segment = _models(state).Segment
    return list(
        state.db.session.scalars(
            sa.select(Segment)
            .where(Segment.workspace_id == _ws(state, workspace_id))
            .order_by(Segment.name)
        )
    )


def update_segment(
    segment_id: int,
    *,
    name: str | None = None,
    rules: dict[str, t.Any] | None = None,
    workspace_id: str | None = None,
) -> t.Any:
    state = _get_state()
    seg = get_segment(segment_id, workspace_id)
    if seg is None:
        raise LookupError("no such segment")
    if rules is not None:
        validate_rules(rules)
        seg.rules = rules
    if name is not None:
        Segment = _models(state).Segment
        other = state.db.session.scalar(
            sa.select(Segment.id).where(
                Segment.workspace_id == seg.workspace_id,
                Segment.name == name.strip(),
                Segment.id != seg.id,
            )
        )
        if other is not None:
            raise SegmentRuleError(
                [("name", f"a segment named {name.strip()!r} already exists")]
            )
        seg.name = name.strip()
    state.db.session.commit()
    return seg


def delete_segment(segment_id: int, workspace_id: str | None = None) -> bool:
    state = _get_state()
    seg = get_segment(segment_id, workspace_id)
    if seg is None:
        return False
    state.db.session.delete(seg)
    state.db.session.commit()
    return True
