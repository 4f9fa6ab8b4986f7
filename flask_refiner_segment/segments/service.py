"""Saved segments (create, read, update, delete) and membership, in SQL.

Every function needs an app context and runs on a connection of the
extension's own, never on the host's ``db.session``. ``workspace_id=None`` means
the default workspace. A ``segment`` argument is a :class:`SavedSegment`, a
segment id, or a rules dict.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import typing as t

import sqlalchemy as sa

from ..state import State
from ..state import autocommit
from ..state import get_state
from ..tables.base import utcnow
from .compile import Compiler
from .compile import window_params
from .rules import SegmentRuleError
from .rules import check_name
from .rules import validate_rules

Rules = dict[str, t.Any]

#: Segment ids are 32-bit integers.
MAX_ID = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class SavedSegment:
    """A named rule set of one workspace."""

    id: int
    workspace_id: str
    name: str
    rules: Rules
    created_at: dt.datetime
    updated_at: dt.datetime


SegmentRef = SavedSegment | int | Rules


def _table(state: State) -> sa.Table:
    return t.cast(sa.Table, state.tables.segments.Segment.__table__)


def _saved(row: sa.Row[t.Any]) -> SavedSegment:
    return SavedSegment(
        id=int(row.id),
        workspace_id=str(row.workspace_id),
        name=str(row.name),
        rules=row.rules,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _rules_and_ws(
    state: State, segment: SegmentRef, workspace_id: str | None
) -> tuple[Rules, str]:
    """The rules to evaluate and their workspace.

    A segment id is looked up in the workspace asked for; a
    :class:`SavedSegment` is evaluated in its own, unless another is asked for.
    Either way a segment of another workspace is :exc:`LookupError`.
    """
    if isinstance(segment, dict):
        return validate_rules(segment), state.workspace(workspace_id)
    if isinstance(segment, int):
        found = _get(state, segment, state.workspace(workspace_id))
        if found is None:
            raise LookupError("no such segment")
        segment = found
    elif workspace_id is not None and segment.workspace_id != workspace_id:
        raise LookupError("no such segment")
    return validate_rules(segment.rules), segment.workspace_id


def members_query(
    workspace_id: str | None, rules: Rules, per_user: bool = False
) -> sa.Select[t.Any]:
    """The SELECT of member user ids for ``rules`` (validated here);
    ``per_user``: compiled to be filtered to one user."""
    state = get_state()
    validate_rules(rules)
    return Compiler(
        state.tables.inbound,
        state.tables.outbound.SurveyResponse,
        state.db.engine.dialect.name,
        state.workspace(workspace_id),
        per_user=per_user,
    ).members_query(rules)


#: Rule sets whose one-user query is kept, per process.
MEMBER_QUERIES = 256


def _member_query(
    state: State, ws: str, rules: Rules
) -> tuple[sa.Select[t.Any], tuple[int, ...]]:
    """The query of one user's membership (parameter ``user_id``) and its
    windows' days, built once per rule set: building it costs more than
    running it, and a survey app asks per request."""
    kept: dict[tuple[str, str], tuple[sa.Select[t.Any], tuple[int, ...]]]
    kept = state.local("segment_member_queries", dict)
    key = (ws, json.dumps(rules, sort_keys=True))
    found = kept.get(key)
    if found is None:
        compiler = Compiler(
            state.tables.inbound,
            state.tables.outbound.SurveyResponse,
            state.db.engine.dialect.name,
            ws,
            per_user=True,
        )
        q = compiler.members_query(rules)
        q = q.where(q.selected_columns.user_id == sa.bindparam("user_id")).limit(1)
        found = q, tuple(compiler.windows)
        if len(kept) >= MEMBER_QUERIES:
            kept.clear()
        kept[key] = found
    return found


def is_member(
    user_id: str, segment: SegmentRef, workspace_id: str | None = None
) -> bool:
    """Whether a user is in a segment."""
    state = get_state()
    rules, ws = _rules_and_ws(state, segment, workspace_id)
    q, windows = _member_query(state, ws, rules)
    params = {"user_id": str(user_id), **window_params(windows, utcnow())}
    with autocommit(state.db.engine).connect() as conn:
        return conn.execute(q, params).first() is not None


def count(segment: SegmentRef, workspace_id: str | None = None) -> int:
    """Number of users in a segment, counted in SQL."""
    rules, ws = _rules_and_ws(get_state(), segment, workspace_id)
    sub = members_query(ws, rules).subquery()
    with get_state().db.engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(sub)).scalar_one()
        )


def members(
    segment: SegmentRef,
    page: int = 1,
    per_page: int = 50,
    workspace_id: str | None = None,
) -> list[str]:
    """One page of member user ids, ordered by user id."""
    rules, ws = _rules_and_ws(get_state(), segment, workspace_id)
    q = members_query(ws, rules)
    q = (
        q.order_by(q.selected_columns.user_id)
        .limit(per_page)
        .offset((max(page, 1) - 1) * per_page)
    )
    with get_state().db.engine.connect() as conn:
        return [str(u) for u in conn.execute(q).scalars()]


def _name(name: object) -> str:
    return check_name(name)


def _taken(name: str) -> SegmentRuleError:
    return SegmentRuleError([("name", f"a segment named {name!r} already exists")])


def create_segment(
    name: str, rules: Rules, workspace_id: str | None = None
) -> SavedSegment:
    """Validate and save a named segment (raises :class:`SegmentRuleError`)."""
    state = get_state()
    name = _name(name)
    validate_rules(rules)
    table = _table(state)
    now = utcnow()
    ws = state.workspace(workspace_id)
    values = {
        "workspace_id": ws,
        "name": name,
        "rules": rules,
        "created_at": now,
        "updated_at": now,
    }
    try:
        with state.db.engine.begin() as conn:
            new_id = conn.execute(table.insert().values(values)).inserted_primary_key
    except sa.exc.IntegrityError:
        raise _taken(name) from None
    if new_id is None:  # pragma: no cover - every supported dialect returns it
        raise RuntimeError("the database did not return the new segment's id")
    return SavedSegment(
        id=int(new_id[0]),
        workspace_id=ws,
        name=name,
        rules=rules,
        created_at=now,
        updated_at=now,
    )


def _get(state: State, segment_id: int, workspace_id: str) -> SavedSegment | None:
    if not 0 < segment_id <= MAX_ID:  # no such row, and out of the column's range
        return None
    table = _table(state)
    query = sa.select(table).where(
        table.c.id == segment_id, table.c.workspace_id == workspace_id
    )
    with state.db.engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else _saved(row)


def get_segment(
    segment_id: int, workspace_id: str | None = None
) -> SavedSegment | None:
    """A saved segment of the workspace by id, or ``None``."""
    state = get_state()
    return _get(state, segment_id, state.workspace(workspace_id))


def get_segment_by_name(
    name: str, workspace_id: str | None = None
) -> SavedSegment | None:
    """A saved segment of the workspace by name, or ``None``."""
    state = get_state()
    table = _table(state)
    with state.db.engine.connect() as conn:
        row = conn.execute(
            sa.select(table).where(
                table.c.workspace_id == state.workspace(workspace_id),
                table.c.name == name,
            )
        ).first()
    return None if row is None else _saved(row)


def list_segments(workspace_id: str | None = None) -> list[SavedSegment]:
    """The workspace's saved segments, by name."""
    state = get_state()
    table = _table(state)
    with state.db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(table)
            .where(table.c.workspace_id == state.workspace(workspace_id))
            .order_by(table.c.name)
        ).all()
    return [_saved(row) for row in rows]


def update_segment(
    segment_id: int,
    *,
    name: str | None = None,
    rules: Rules | None = None,
    workspace_id: str | None = None,
) -> SavedSegment:
    """Change a segment's name and/or rules (raises :class:`LookupError`,
    :class:`SegmentRuleError`)."""
    state = get_state()
    segment = get_segment(segment_id, workspace_id)
    if segment is None:
        raise LookupError("no such segment")
    values: dict[str, t.Any] = {"updated_at": utcnow()}
    if rules is not None:
        values["rules"] = validate_rules(rules)
    if name is not None:
        values["name"] = _name(name)
    table = _table(state)
    try:
        with state.db.engine.begin() as conn:
            conn.execute(table.update().where(table.c.id == segment.id).values(values))
    except sa.exc.IntegrityError:
        raise _taken(values["name"]) from None
    return dataclasses.replace(segment, **values)


def delete_segment(segment_id: int, workspace_id: str | None = None) -> bool:
    """Delete a segment of the workspace; ``False`` when there was none."""
    if not 0 < segment_id <= MAX_ID:
        return False
    state = get_state()
    table = _table(state)
    with state.db.engine.begin() as conn:
        deleted = conn.execute(
            table.delete().where(
                table.c.id == segment_id,
                table.c.workspace_id == state.workspace(workspace_id),
            )
        ).rowcount
    return bool(deleted)
