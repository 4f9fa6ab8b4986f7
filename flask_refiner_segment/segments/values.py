"""Typed comparisons of JSON values in SQL, for segment rules.

A :class:`Val` is a value reached by a JSON path in a JSON column, or a
top-level trait row (its ``value_type``/``value_text``/``value_num``
projections); :func:`value_predicate` compares it with a rule's value, typed
strictly (see :mod:`.compile` for the semantics).
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

_SQLITE_TYPES = {
    "string": ("text",),
    "number": ("integer", "real"),
    "null": ("null",),
}


class Val:
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


def _eq(v: Val, value: t.Any) -> t.Any:
    if isinstance(value, bool):
        return v.is_bool(value)
    if isinstance(value, str):
        return sa.and_(v.is_("string"), v.text() == value)
    return sa.and_(v.is_("number"), v.num() == float(value))


def _contains(v: Val, value: str) -> t.Any:
    fn = sa.func.strpos if v.dialect == "postgresql" else sa.func.instr
    return sa.and_(v.is_("string"), fn(v.text(), value) > 0)


def value_predicate(v: Val, op: str, value: t.Any) -> t.Any:
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
