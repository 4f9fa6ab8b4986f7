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
from .values import Val
from .values import value_predicate


def window_params(days: t.Iterable[int], now: dt.datetime) -> dict[str, dt.datetime]:
    """The ``since_<days>`` parameters of a compiled query, as of ``now``."""
    return {f"since_{d}": now - dt.timedelta(days=d) for d in days}


class Compiler:
    def __init__(
        self,
        inbound: t.Any,
        response: t.Any,
        dialect: str,
        workspace_id: str,
        now: dt.datetime | None = None,
        per_user: bool = False,
    ) -> None:
        self.m = inbound
        self.response = (
            response.__table__ if hasattr(response, "__table__") else response
        )
        self.dialect = "postgresql" if dialect == "postgresql" else "sqlite"
        self.ws = workspace_id
        self.now = now or utcnow()
        self.profile = inbound.Profile.__table__
        # Counting every profile (PostgreSQL): each trait and event condition
        # is one set of users (with their event counts) LEFT JOINed to the
        # profiles, instead of a correlated subquery per profile: hash joins
        # whatever the rule's AND/OR shape. One user (``per_user``) keeps the
        # correlated form: a few index lookups.
        self.joined = self.dialect == "postgresql" and not per_user
        self.joins: list[tuple[t.Any, t.Any]] = []
        self.windows: dict[int, t.Any] = {}

    def since(self, days: int) -> t.Any:
        """The start of a window of ``days`` before ``now``: a parameter named
        ``since_<days>``, so a query kept for later can be given a new one
        (:func:`window_params`)."""
        if days not in self.windows:
            self.windows[days] = sa.bindparam(
                f"since_{days}", self.now - dt.timedelta(days=days), type_=sa.DateTime()
            )
        return self.windows[days]

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
            Val(self.dialect, row=tr)
            if not rest
            else Val(self.dialect, col=self._json(tr.c.value), path=rest)
        )
        op = c["op"]
        pred = value_predicate(
            v, "exists" if op == "not_exists" else op, c.get("value")
        )
        if join is None:
            owner = tr.c.user_id
            q = sa.select(owner).where(
                tr.c.workspace_id == self.ws, tr.c.key == head, pred
            )
        else:
            link = join.alias()
            owner = link.c.user_id
            on = sa.and_(
                tr.c.workspace_id == link.c.workspace_id,
                tr.c.group_id == link.c.group_id,
            )
            q = (
                sa.select(owner)
                .select_from(link.join(tr, on))
                .where(link.c.workspace_id == self.ws, tr.c.key == head, pred)
            )
        if self.joined:
            # One row per user: the trait table's key, or GROUP BY for accounts.
            found = self._join(q if join is None else q.group_by(owner), subject)
            hit = found.c.user_id.is_not(None)
        else:
            hit = q.where(owner == subject).exists()
        return sa.not_(hit) if op == "not_exists" else hit

    def _join(self, q: sa.Select[t.Any], subject: t.Any) -> t.Any:
        """``q`` (one row per ``user_id``) as a subquery LEFT JOINed to the
        profiles by user: a user it has no row for gets NULLs."""
        found = q.subquery()
        self.joins.append((found, found.c.user_id == subject))
        return found

    def _event_scope(
        self, ev: t.Any, c: dict[str, t.Any], where: bool = True
    ) -> list[t.Any]:
        """The conditions on an event alias ``ev`` but its user; the property
        condition only with ``where``."""
        conds = [ev.c.workspace_id == self.ws, ev.c.name == c["name"]]
        if c.get("within_days"):
            conds.append(ev.c.timestamp >= self.since(c["within_days"]))
        w = c.get("where")
        if w and where:
            v = Val(
                self.dialect, col=self._json(ev.c.properties), path=w["key"].split(".")
            )
            p = value_predicate(
                v, "exists" if w["op"] == "not_exists" else w["op"], w.get("value")
            )
            conds.append(
                sa.not_(sa.func.coalesce(p, False)) if w["op"] == "not_exists" else p
            )
        return conds

    def _event(self, c: dict[str, t.Any], subject: t.Any) -> t.Any:
        ev = self.m.Event.__table__.alias()
        conds = self._event_scope(ev, c)
        n = c["count"]
        if c["op"] == "at_least" and n == 0:
            return sa.true()
        if self.joined:
            return self._event_joined(c, subject)
        conds.append(ev.c.user_id == subject)
        if c["op"] == "at_least":
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

    def _event_joined(self, c: dict[str, t.Any], subject: t.Any) -> t.Any:
        """The count of a user's matching events, from a per-user aggregate
        joined to the profiles (no row: 0).

        With a property condition, only the users with enough events of the
        name in the window (an index-only scan) have their events' properties
        read, each capped at enough rows to decide: the properties are in the
        table, and reading them for every event of the window is the cost.
        """
        n = c["count"]
        enough = n if c["op"] == "at_least" else n + 1
        ev = self.m.Event.__table__.alias()
        if not c.get("where"):
            counted = (
                sa.select(ev.c.user_id, sa.func.count().label("n"))
                .where(*self._event_scope(ev, c))
                .group_by(ev.c.user_id)
            )
        else:
            # Fewer than ``enough`` events at all: fewer matching ones, which
            # decides as 0 does (at_least n: below n; at_most n: at most n).
            candidates = (
                sa.select(ev.c.user_id)
                .where(*self._event_scope(ev, c, where=False))
                .group_by(ev.c.user_id)
                .having(sa.func.count() >= enough)
                .subquery()
            )
            matching = self.m.Event.__table__.alias()
            limited = (
                sa.select(matching.c.id)
                .where(
                    *self._event_scope(matching, c),
                    matching.c.user_id == candidates.c.user_id,
                )
                .limit(enough)
                .correlate(candidates)
                .subquery()
            )
            counted = sa.select(
                candidates.c.user_id,
                sa.select(sa.func.count())
                .select_from(limited)
                .scalar_subquery()
                .label("n"),
            )
        got = sa.func.coalesce(self._join(counted, subject).c.n, 0)
        return got >= n if c["op"] == "at_least" else got <= n

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
        v = Val(self.dialect, col=self._json(r.c.answers), path=[c["question"]])
        answered = conds + [r.c.answers.is_not(None), v.present()]
        if c["op"] in ("exists", "not_exists"):
            ex = sa.select(sa.literal(1)).select_from(r).where(*answered).exists()
            return sa.not_(ex) if c["op"] == "not_exists" else ex
        latest = self._latest(r, r.c.id, answered)
        r2 = self.response.alias()
        v2 = Val(self.dialect, col=self._json(r2.c.answers), path=[c["question"]])
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
        self.joins = []
        where = self.group(rules, p.c.user_id)
        source = p
        for counted, on in self.joins:
            source = source.outerjoin(counted, on)
        return (
            sa.select(p.c.user_id)
            .select_from(source)
            .where(p.c.workspace_id == self.ws, where)
        )
