"""Compile a validated rule set to one SQL SELECT of user ids (EXISTS per condition).

Semantics (the Python reference in tests/test_segments_property.py mirrors them):

- Values are typed strictly: ``eq 5`` matches the JSON number 5, not the string
  ``"5"``; ``eq true`` matches the JSON boolean only.
- ``neq`` matches a present (non-null) value that is not ``eq``; a missing
  trait matches neither ``eq`` nor ``neq``.
- ``contains`` / ``starts_with`` are case-sensitive, on string values.
- ``gt``/``gte``/``lt``/``lte`` with a number compare JSON numbers; with an ISO
  date string they compare string values lexicographically (ISO 8601 order).
- ``exists``: the value is present and not JSON null; ``not_exists``: the opposite.
- ``account_trait``: true when *any* of the user's accounts matches
  (``not_exists``: none of them has the trait).
- ``event``: count of the user's events of that name (within the last D days,
  with the property condition) ``>= N`` (at_least) or ``<= N`` (at_most).
- ``survey_completed``, ``answer`` and ``nps_group`` read the latest recorded
  content of each response (``refiner_segment_response``: one row per accepted
  response, whatever became of its delivery), never the deliveries, so pruning
  deliveries changes no membership. ``survey_completed``: the user has a
  response to that survey. ``answer`` compares the latest response of that user
  and survey that answered the question (latest by ``updated_at``, then
  ``id``); ``exists`` / ``not_exists``: some / no response answered it.
  ``nps_group``: the group of the latest response with an NPS score (of any
  survey, or of ``survey_id``).
"""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ..tables.base import utcnow

_SQLITE_TYPES = {
    "string": ("text",),
    "number": ("integer", "real"),
    "null": ("null",),
}


class _Val:
    """A value reached by a JSON path (or a top-level trait row)."""

    def __init__(
        self,
        dialect: str,
        col: t.Any = None,
        path: t.Sequence[str] = (),
        row: t.Any = None,
    ) -> None:
        self.dialect = dialect
        self.col = col
        self.path = list(path)
        self.row = row  # a trait table: use value_type / value_text / value_num

    def _sqlite_path(self) -> str:
        return "$" + "".join('."' + p.replace('"', '""') + '"' for p in self.path)

    def type_(self) -> t.Any:
        if self.row is not None:
            return self.row.c.value_type
        if self.dialect == "postgresql":
            return sa.func.jsonb_typeof(
                sa.func.jsonb_extract_path(
                    self.col, *[sa.literal(p) for p in self.path]
                )
            )
        return sa.func.json_type(self.col, self._sqlite_path())

    def is_(self, name: str) -> t.Any:
        typ = self.type_()
        if self.row is not None or self.dialect == "postgresql":
            return typ == name
        if name == "boolean":
            return typ.in_(("true", "false"))
        return typ.in_(_SQLITE_TYPES[name])

    def text(self) -> t.Any:
        if self.row is not None:
            return self.row.c.value_text
        if self.dialect == "postgresql":
            return sa.func.jsonb_extract_path_text(
                self.col, *[sa.literal(p) for p in self.path]
            )
        return sa.func.json_extract(self.col, self._sqlite_path())

    def num(self) -> t.Any:
        if self.row is not None:
            return self.row.c.value_num
        if self.dialect == "postgresql":
            return sa.case((self.is_("number"), sa.cast(self.text(), sa.Float)))
        return sa.func.json_extract(self.col, self._sqlite_path())

    def present(self) -> t.Any:
        typ = self.type_()
        return sa.and_(typ.is_not(None), typ != "null")

    def is_bool(self, value: bool) -> t.Any:
        if self.row is not None:
            return sa.and_(
                self.is_("boolean"), self.text() == ("true" if value else "false")
            )
        if self.dialect == "postgresql":
            return sa.and_(
                self.is_("boolean"), self.text() == ("true" if value else "false")
            )
        return self.type_() == ("true" if value else "false")


def _eq(v: _Val, value: t.Any) -> t.Any:
    if isinstance(value, bool):
        return v.is_bool(value)
    if isinstance(value, str):
        return sa.and_(v.is_("string"), v.text() == value)
    return sa.and_(v.is_("number"), v.num() == float(value))


def _contains(v: _Val, value: str) -> t.Any:
    fn = sa.func.strpos if v.dialect == "postgresql" else sa.func.instr
    return sa.and_(v.is_("string"), fn(v.text(), value) > 0)


def value_predicate(v: _Val, op: str, value: t.Any) -> t.Any:
    """The predicate for ops other than ``not_exists`` (handled by the caller)."""
    if op == "exists":
        return v.present()
    if op == "eq":
        return _eq(v, value)
    if op == "neq":
        return sa.and_(v.present(), sa.not_(sa.func.coalesce(_eq(v, value), False)))
    if op == "contains":
        return _contains(v, value)
    if op == "starts_with":
        return sa.and_(
            v.is_("string"), sa.func.substr(v.text(), 1, len(value)) == value
        )
    if op == "in":
        strs = [x for x in value if isinstance(x, str)]
        nums = [float(x) for x in value if not isinstance(x, str)]
        parts = []
        if strs:
            parts.append(sa.and_(v.is_("string"), v.text().in_(strs)))
        if nums:
            parts.append(sa.and_(v.is_("number"), v.num().in_(nums)))
        return sa.or_(*parts)
    cmp = {"gt": "__gt__", "gte": "__ge__", "lt": "__lt__", "lte": "__le__"}[op]
    if isinstance(value, str):
        return sa.and_(v.is_("string"), getattr(v.text(), cmp)(value))
    return sa.and_(v.is_("number"), getattr(v.num(), cmp)(float(value)))


class Compiler:
    def __init__(
        self,
        inbound: t.Any,
        response: t.Any,
        dialect: str,
        workspace_id: str,
        now: dt.datetime | None = None,
    ) -> None:
        self.m = inbound
        self.response = (
            response.__table__ if hasattr(response, "__table__") else response
        )
        self.dialect = "postgresql" if dialect == "postgresql" else "sqlite"
        self.ws = workspace_id
        self.now = now or utcnow()
        self.profile = inbound.Profile.__table__

    def _json(self, col: t.Any) -> t.Any:
        if self.dialect == "postgresql":
            return sa.cast(col, postgresql.JSONB)
        return col

    def _trait(
        self, table: t.Any, c: dict[str, t.Any], subject: t.Any, join: t.Any = None
    ) -> t.Any:
        tr = table.alias()
        head, *rest = c["key"].split(".")
        v = (
            _Val(self.dialect, row=tr)
            if not rest
            else _Val(self.dialect, col=self._json(tr.c.value), path=rest)
        )
        op = c["op"]
        pred = value_predicate(
            v, "exists" if op == "not_exists" else op, c.get("value")
        )
        if join is None:
            q = (
                sa.select(sa.literal(1))
                .select_from(tr)
                .where(
                    tr.c.workspace_id == self.ws,
                    tr.c.user_id == subject,
                    tr.c.key == head,
                    pred,
                )
            )
        else:
            link = join.alias()
            q = (
                sa.select(sa.literal(1))
                .select_from(
                    link.join(
                        tr,
                        sa.and_(
                            tr.c.workspace_id == link.c.workspace_id,
                            tr.c.group_id == link.c.group_id,
                        ),
                    )
                )
                .where(
                    link.c.workspace_id == self.ws,
                    link.c.user_id == subject,
                    tr.c.key == head,
                    pred,
                )
            )
        ex = q.exists()
        return sa.not_(ex) if op == "not_exists" else ex

    def _event(self, c: dict[str, t.Any], subject: t.Any) -> t.Any:
        ev = self.m.Event.__table__.alias()
        conds = [
            ev.c.workspace_id == self.ws,
            ev.c.user_id == subject,
            ev.c.name == c["name"],
        ]
        if c.get("within_days"):
            conds.append(
                ev.c.timestamp >= self.now - dt.timedelta(days=c["within_days"])
            )
        w = c.get("where")
        if w:
            v = _Val(
                self.dialect, col=self._json(ev.c.properties), path=w["key"].split(".")
            )
            p = value_predicate(
                v, "exists" if w["op"] == "not_exists" else w["op"], w.get("value")
            )
            conds.append(
                sa.not_(sa.func.coalesce(p, False)) if w["op"] == "not_exists" else p
            )
        n = c["count"]
        if c["op"] == "at_least":
            if n == 0:
                return sa.true()
            if n == 1:
                return sa.select(sa.literal(1)).select_from(ev).where(*conds).exists()
            # Count at most n rows: LIMIT keeps heavy users cheap.
            limited = (
                sa.select(ev.c.id)
                .where(*conds)
                .limit(n)
                .correlate(self.profile)
                .subquery()
            )
            return (
                sa.select(sa.func.count()).select_from(limited).scalar_subquery() >= n
            )
        if n == 0:
            return sa.not_(
                sa.select(sa.literal(1)).select_from(ev).where(*conds).exists()
            )
        limited = (
            sa.select(ev.c.id)
            .where(*conds)
            .limit(n + 1)
            .correlate(self.profile)
            .subquery()
        )
        return sa.select(sa.func.count()).select_from(limited).scalar_subquery() <= n

    def _responses(
        self, subject: t.Any, survey_id: str | None
    ) -> tuple[t.Any, list[t.Any]]:
        """An alias of the response table and the conditions that scope it to
        ``subject`` (and ``survey_id``): the prefix of its user index."""
        r = self.response.alias()
        conds = [r.c.workspace_id == self.ws, r.c.user_id == subject]
        if survey_id is not None:
            conds.append(r.c.survey_id == survey_id)
        return r, conds

    def _latest(self, r: t.Any, column: t.Any, conds: list[t.Any]) -> t.Any:
        """``column`` of the newest response of ``r`` that meets ``conds``."""
        return (
            sa.select(column)
            .where(*conds)
            .order_by(r.c.updated_at.desc(), r.c.id.desc())
            .limit(1)
            .correlate(self.profile)
            .scalar_subquery()
        )

    def _survey_completed(self, c: dict[str, t.Any], subject: t.Any) -> t.Any:
        r, conds = self._responses(subject, c["survey_id"])
        return sa.select(sa.literal(1)).select_from(r).where(*conds).exists()

    def _answer(self, c: dict[str, t.Any], subject: t.Any) -> t.Any:
        r, conds = self._responses(subject, c["survey_id"])
        v = _Val(self.dialect, col=self._json(r.c.answers), path=[c["question"]])
        answered = conds + [r.c.answers.is_not(None), v.present()]
        if c["op"] in ("exists", "not_exists"):
            ex = sa.select(sa.literal(1)).select_from(r).where(*answered).exists()
            return sa.not_(ex) if c["op"] == "not_exists" else ex
        latest = self._latest(r, r.c.id, answered)
        r2 = self.response.alias()
        v2 = _Val(self.dialect, col=self._json(r2.c.answers), path=[c["question"]])
        return (
            sa.select(sa.literal(1))
            .select_from(r2)
            .where(r2.c.id == latest, value_predicate(v2, c["op"], c.get("value")))
            .exists()
        )

    def _nps_group(self, c: dict[str, t.Any], subject: t.Any) -> t.Any:
        """The latest recorded NPS score (of any survey, or of ``survey_id``)."""
        r, conds = self._responses(subject, c.get("survey_id") or None)
        latest = self._latest(r, r.c.nps_score, conds + [r.c.nps_score.is_not(None)])
        low, high = {"promoter": (9, 10), "passive": (7, 8), "detractor": (0, 6)}[
            c["value"]
        ]
        # IN, not BETWEEN: BETWEEN repeats the subquery for its second bound.
        return latest.in_(list(range(low, high + 1)))

    def condition(self, c: dict[str, t.Any], subject: t.Any) -> t.Any:
        if "kind" not in c:
            return self.group(c, subject)
        kind = c["kind"]
        if kind == "trait":
            return self._trait(self.m.UserTrait.__table__, c, subject)
        if kind == "account_trait":
            return self._trait(
                self.m.AccountTrait.__table__,
                c,
                subject,
                join=self.m.Membership.__table__,
            )
        if kind == "event":
            return self._event(c, subject)
        if kind == "survey_completed":
            return self._survey_completed(c, subject)
        if kind == "answer":
            return self._answer(c, subject)
        if kind == "nps_group":
            return self._nps_group(c, subject)
        raise ValueError(kind)  # pragma: no cover - validated before

    def group(self, g: dict[str, t.Any], subject: t.Any) -> t.Any:
        parts = [
            sa.func.coalesce(self.condition(c, subject), False)
            if False
            else self.condition(c, subject)
            for c in g["conditions"]
        ]
        if not parts:
            return sa.true() if g["match"] == "all" else sa.false()
        return sa.and_(*parts) if g["match"] == "all" else sa.or_(*parts)

    def members_query(self, rules: dict[str, t.Any]) -> sa.Select[t.Any]:
        p = self.profile
        return sa.select(p.c.user_id).where(
            p.c.workspace_id == self.ws, self.group(rules, p.c.user_id)
        )
