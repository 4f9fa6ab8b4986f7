"""The rule builder: rules as rows of form fields, and back.

A row is one condition (kind, survey, key, operator, value, days), or a group
of rows with its own all/any. Rows are named by their place: ``0``, ``1`` ...
at the top, ``1.0``, ``1.1`` ... inside the group ``1``. The form fields are
``c-<id>-<field>`` for a condition and ``g-<id>-match`` for a group.

Rules the rows cannot show exactly (an event's ``where``, fields the builder
does not know) are edited as JSON: :func:`to_builder` returns ``None``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing as t

from .rules import EVENT_OPS
from .rules import MATCHES

#: The fields of a condition row, all strings as typed.
FIELDS = ("kind", "survey", "key", "op", "value", "days")
#: Operators as the builder names them.
OP_LABELS = {
    "eq": "is",
    "neq": "is not",
    "contains": "contains",
    "starts_with": "starts with",
    "in": "is one of",
    "gt": ">",
    "gte": "≥",
    "lt": "<",
    "lte": "≤",
    "exists": "is set",
    "not_exists": "is not set",
    "at_least": "at least N times",
    "at_most": "at most N times",
}
KIND_LABELS = {
    "trait": "User trait",
    "account_trait": "Account trait",
    "event": "Event performed",
    "answer": "Survey answer",
    "survey_completed": "Survey completed",
    "nps_group": "NPS group",
}
_ID = re.compile(r"^(?:c-(\d+(?:\.\d+)?)-(\w+)|g-(\d+)-match)$")
_PATH = re.compile(r"^conditions\[(\d+)\](?:\.conditions\[(\d+)\])?")
#: Values that, typed as is, are read as numbers or booleans.
_LITERAL = re.compile(r"^(?:-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false)$")


@dataclasses.dataclass
class Row:
    """One condition, its fields as typed."""

    id: str
    kind: str = "trait"
    survey: str = ""
    key: str = ""
    op: str = "eq"
    value: str = ""
    days: str = ""


@dataclasses.dataclass
class Group:
    """Rows combined with their own all/any."""

    id: str
    match: str = "any"
    rows: list[Row] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Builder:
    match: str = "all"
    items: list[Row | Group] = dataclasses.field(default_factory=list)

    def renumber(self) -> Builder:
        """Give every row and group the id of its place."""
        for i, item in enumerate(self.items):
            item.id = str(i)
            if isinstance(item, Group):
                for j, row in enumerate(item.rows):
                    row.id = f"{i}.{j}"
        return self

    def add_row(self, group: str | None = None) -> None:
        if group is None:
            self.items.append(Row(id=""))
        else:
            for item in self.items:
                if isinstance(item, Group) and item.id == group:
                    item.rows.append(Row(id=""))
        self.renumber()

    def add_group(self) -> None:
        self.items.append(Group(id="", rows=[Row(id="")]))
        self.renumber()

    def remove(self, item_id: str) -> None:
        kept: list[Row | Group] = []
        for item in self.items:
            if item.id == item_id:
                continue
            if isinstance(item, Group):
                item.rows = [r for r in item.rows if r.id != item_id]
            kept.append(item)
        self.items = kept
        self.renumber()


# -- form fields -> rows -> rules -------------------------------------------


def read_form(form: t.Mapping[str, str]) -> Builder:
    """The builder as posted (unknown or malformed field names are ignored)."""
    rows: dict[tuple[int, ...], Row] = {}
    groups: dict[int, Group] = {}
    for name in form:
        m = _ID.match(name)
        if not m:
            continue
        if m.group(3) is not None:
            g = int(m.group(3))
            groups.setdefault(g, Group(id=str(g))).match = form[name]
        elif m.group(2) in FIELDS:
            place = tuple(int(p) for p in m.group(1).split("."))
            row = rows.setdefault(place, Row(id=m.group(1)))
            setattr(row, m.group(2), form[name].strip())
    builder = Builder(match=form.get("match", "all"))
    for place in sorted({*((g,) for g in groups), *(p[:1] for p in rows)}):
        if place[0] in groups:
            group = groups[place[0]]
            group.rows = [
                rows[p] for p in sorted(rows) if len(p) == 2 and p[0] == place[0]
            ]
            builder.items.append(group)
        elif place in rows:
            builder.items.append(rows[place])
    return builder.renumber()


def to_rules(builder: Builder) -> dict[str, t.Any]:
    """The rule set the rows say (checked by the caller)."""

    def group(match: str, items: t.Iterable[Row | Group]) -> dict[str, t.Any]:
        return {
            "match": match,
            "conditions": [
                group(i.match, i.rows) if isinstance(i, Group) else condition(i)
                for i in items
            ],
        }

    return group(builder.match, builder.items)


def condition(row: Row) -> dict[str, t.Any]:
    """One row as a condition (values read as :func:`read_value` reads them)."""
    c: dict[str, t.Any] = {"kind": row.kind}
    if row.kind == "event":
        c.update(name=row.key, op=row.op, count=read_value(row.value))
        if row.days:
            c["within_days"] = read_value(row.days)
        return c
    if row.kind == "survey_completed":
        c["survey_id"] = row.survey
        return c
    if row.kind == "nps_group":
        c["value"] = row.value
        if row.survey:
            c["survey_id"] = row.survey
        return c
    if row.kind == "answer":
        c.update(survey_id=row.survey, question=row.key)
    else:
        c["key"] = row.key
    c["op"] = row.op
    if row.op == "in":
        c["value"] = [read_value(v) for v in row.value.split(",") if v.strip()]
    elif row.op not in ("exists", "not_exists") and row.value != "":
        c["value"] = read_value(row.value)
    return c


def read_value(text: str) -> t.Any:
    """A typed value: numbers and ``true``/``false`` as such, a JSON string in
    quotes (``"10"``) as a string, anything else as the text itself."""
    text = text.strip()
    if _LITERAL.match(text) or (len(text) >= 2 and text[0] == text[-1] == '"'):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def show_value(value: t.Any) -> str:
    """How :func:`read_value` reads ``value`` back."""
    if isinstance(value, str):
        read = read_value(value)
        if not isinstance(read, str) or read != value:
            return json.dumps(value, ensure_ascii=False)
        return value
    return json.dumps(value)


# -- rules -> rows ----------------------------------------------------------


def to_builder(rules: t.Any) -> Builder | None:
    """The rows showing ``rules`` exactly, or ``None`` (then edit as JSON)."""
    try:
        builder = Builder(match=rules["match"], items=[])
        for c in rules["conditions"]:
            if "kind" not in c and "conditions" in c:
                group = Group(
                    id="", match=c["match"], rows=[_row(x) for x in c["conditions"]]
                )
                builder.items.append(group)
            else:
                builder.items.append(_row(c))
        builder.renumber()
        if builder.match not in MATCHES or to_rules(builder) != normal(rules):
            return None  # something the rows cannot say, e.g. an event's "where"
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError):
        return None
    return builder


def normal(rules: t.Any) -> t.Any:
    """``rules`` without the condition keys that are ``null`` (the checker
    and the compiler read a missing key and ``null`` alike)."""
    if isinstance(rules, list):
        return [normal(x) for x in rules]
    if not isinstance(rules, dict):
        return rules
    is_condition = "kind" in rules
    return {k: normal(v) for k, v in rules.items() if not (is_condition and v is None)}


def _row(c: dict[str, t.Any]) -> Row:
    kind = c["kind"]
    if kind == "event":
        days = c.get("within_days")
        return Row(
            id="",
            kind=kind,
            key=c["name"],
            op=c["op"],
            value=show_value(c["count"]),
            days="" if days is None else show_value(days),
        )
    if kind == "survey_completed":
        return Row(id="", kind=kind, survey=c["survey_id"], op="")
    if kind == "nps_group":
        survey = c.get("survey_id") or ""
        return Row(id="", kind=kind, survey=survey, op="", value=c["value"])
    value: t.Any = c.get("value")
    if c["op"] == "in":
        items = [show_value(v) for v in value]
        if any("," in v for v in items):
            raise ValueError("a list item with a comma")
        shown = ", ".join(items)
    else:
        shown = "" if value is None else show_value(value)
    key = c["question"] if kind == "answer" else c["key"]
    survey = c["survey_id"] if kind == "answer" else ""
    return Row(id="", kind=kind, survey=survey, key=key, op=c["op"], value=shown)


# -- errors -----------------------------------------------------------------


def row_errors(errors: list[tuple[str, str]]) -> tuple[dict[str, list[str]], list[str]]:
    """Split a rule checker's ``(path, message)`` pairs into those of each row
    or group (by id) and the rest."""
    by_row: dict[str, list[str]] = {}
    rest: list[str] = []
    for path, message in errors:
        m = _PATH.match(path)
        if m is None:
            rest.append(message if path in ("", "rules") else f"{path}: {message}")
            continue
        item = m.group(1) if m.group(2) is None else f"{m.group(1)}.{m.group(2)}"
        by_row.setdefault(item, []).append(message)
    return by_row, rest


def is_event_op(op: str) -> bool:
    return op in EVENT_OPS
