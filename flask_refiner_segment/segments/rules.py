"""Rule format and its validation.

A rule set::

    {"match": "all" | "any", "conditions": [condition | group, ...]}

where a group is ``{"match": ..., "conditions": [condition, ...]}`` (one level).
Conditions: see the README, "Rule format".
"""

from __future__ import annotations

import json
import math
import re
import typing as t

from .._compat import fromisoformat

MATCHES = ("all", "any")
VALUE_OPS = (
    "eq", "neq", "contains", "starts_with", "in", "gt", "gte", "lt", "lte",
    "exists", "not_exists",
)  # fmt: skip
EVENT_OPS = ("at_least", "at_most")
KINDS = ("trait", "account_trait", "event", "survey_completed", "answer", "nps_group")
NPS_GROUPS = ("promoter", "passive", "detractor")

#: Limits that keep every saved rule compilable and runnable on both databases.
MAX_DEPTH = 16
MAX_WITHIN_DAYS = 36_500
MAX_COUNT = 2**31 - 1
MAX_KEY = 255
MAX_TEXT = 1000
MAX_LIST = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class SegmentRuleError(ValueError):
    """A rule set is invalid; ``errors`` lists ``(path, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{p}: {m}" for p, m in errors))


def is_iso_date(value: t.Any) -> bool:
    if not isinstance(value, str) or len(value) < 10:
        return False
    try:
        fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_num(v: t.Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: t.Any) -> bool:
    """A number that compares as a float (no NaN, infinity or 10**400)."""
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _check_text(value: t.Any, what: str, limit: int) -> str | None:
    """Why a string of a rule cannot be used, or ``None``."""
    if isinstance(value, str):
        if _CONTROL.search(value):
            return f"{what} must not contain control characters"
        try:
            value.encode()
        except UnicodeEncodeError:
            return f"{what} must be valid Unicode (no lone surrogates)"
        if len(value) > limit:
            return f"{what} must be at most {limit} characters"
    return None


def _check_anywhere(value: t.Any, depth: int) -> str | None:
    """What no part of a stored rule set may hold, known field or not: values
    the databases cannot store (NaN, infinity, NUL, lone surrogates) or nesting
    beyond :data:`MAX_DEPTH`."""
    if depth > MAX_DEPTH:
        return f"rules must not be nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, dict):
        items: t.Iterable[t.Any] = [*value.keys(), *value.values()]
    elif isinstance(value, list):
        items = value
    elif isinstance(value, float) and not math.isfinite(value):
        return "values must be finite numbers (no NaN or infinity)"
    elif isinstance(value, str):
        return _check_text(value, "a string", 10 * MAX_TEXT)
    else:
        return None
    for item in items:
        problem = _check_anywhere(item, depth + 1)
        if problem:
            return problem
    return None


def _check_scalar(v: t.Any) -> str | None:
    if _is_num(v) and not _finite(v):
        return "values must be finite numbers (no NaN, infinity or huge integers)"
    return _check_text(v, "a value", MAX_TEXT)


def _check_value_op(
    c: dict[str, t.Any], path: str, errors: list[tuple[str, str]]
) -> None:
    op = c.get("op")
    if op not in VALUE_OPS:
        errors.append(
            (path, f"unknown operator {op!r} (expected one of {', '.join(VALUE_OPS)})")
        )
        return
    if op in ("exists", "not_exists"):
        if c.get("value") is not None:
            errors.append((path, f"operator {op!r} takes no value"))
        return
    if "value" not in c:
        errors.append((path, f"operator {op!r} needs a 'value'"))
        return
    v = c["value"]
    problems = {_check_scalar(x) for x in (v if isinstance(v, list) else [v])}
    problems.discard(None)
    if isinstance(v, list) and len(v) > MAX_LIST:
        problems.add(f"a list value must have at most {MAX_LIST} items")
    if problems:
        errors.extend((path, str(p)) for p in sorted(problems, key=str))
        return
    if op in ("eq", "neq"):
        if not (isinstance(v, (str, bool)) or _is_num(v)):
            errors.append(
                (path, f"operator {op!r} needs a string, number or boolean value")
            )
    elif op in ("contains", "starts_with"):
        if not isinstance(v, str) or not v:
            errors.append((path, f"operator {op!r} needs a non-empty string value"))
    elif op == "in":
        if (
            not isinstance(v, list)
            or not v
            or not all(isinstance(x, str) or _is_num(x) for x in v)
        ):
            errors.append(
                (path, "operator 'in' needs a non-empty list of strings or numbers")
            )
    else:
        if not (_is_num(v) or is_iso_date(v)):
            errors.append(
                (path, f"operator {op!r} needs a number or an ISO date (YYYY-MM-DD...)")
            )


def _check_key(
    c: dict[str, t.Any], field: str, path: str, errors: list[tuple[str, str]]
) -> None:
    key = c.get(field)
    if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
        errors.append(
            (path, f"needs a non-empty string {field!r} (dotted path allowed)")
        )
        return
    problem = _check_text(key, repr(field), MAX_KEY)
    if problem:
        errors.append((path, problem))


def _check_condition(c: t.Any, path: str, errors: list[tuple[str, str]]) -> None:
    if not isinstance(c, dict):
        errors.append((path, "a condition must be an object"))
        return
    kind = c.get("kind")
    if kind not in KINDS:
        errors.append(
            (path, f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
        )
        return
    path = f"{path} ({kind})"
    for name in ("name", "survey_id", "question"):
        problem = _check_text(c.get(name), repr(name), MAX_KEY)
        if problem:
            errors.append((path, problem))
    if kind in ("trait", "account_trait"):
        _check_key(c, "key", path, errors)
        _check_value_op(c, path, errors)
    elif kind == "event":
        if not isinstance(c.get("name"), str) or not c.get("name"):
            errors.append((path, "needs a non-empty string 'name'"))
        if c.get("op") not in EVENT_OPS:
            errors.append(
                (
                    path,
                    f"unknown operator {c.get('op')!r} (expected at_least or at_most)",
                )
            )
        n = c.get("count")
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_COUNT:
            errors.append((path, f"'count' must be an integer from 0 to {MAX_COUNT}"))
        d = c.get("within_days")
        if d is not None and (
            not isinstance(d, int)
            or isinstance(d, bool)
            or not 1 <= d <= MAX_WITHIN_DAYS
        ):
            errors.append(
                (
                    path,
                    f"'within_days' must be an integer from 1 to {MAX_WITHIN_DAYS}"
                    " or null",
                )
            )
        w = c.get("where")
        if w is not None:
            if not isinstance(w, dict):
                errors.append((path, "'where' must be an object or null"))
            else:
                _check_key(w, "key", path + " where", errors)
                _check_value_op(w, path + " where", errors)
    elif kind == "survey_completed":
        if not isinstance(c.get("survey_id"), str) or not c.get("survey_id"):
            errors.append((path, "needs a non-empty string 'survey_id'"))
    elif kind == "nps_group":
        if c.get("value") not in NPS_GROUPS:
            errors.append(
                (path, "'value' must be 'promoter', 'passive' or 'detractor'")
            )
        survey = c.get("survey_id")
        if survey is not None and (not isinstance(survey, str) or not survey):
            errors.append((path, "'survey_id' must be a non-empty string or absent"))
    elif kind == "answer":
        if not isinstance(c.get("survey_id"), str) or not c.get("survey_id"):
            errors.append((path, "needs a non-empty string 'survey_id'"))
        q = c.get("question")
        if not isinstance(q, str) or not q:
            errors.append((path, "needs a non-empty string 'question'"))
        _check_value_op(c, path, errors)


def _check_group(
    g: t.Any, path: str, errors: list[tuple[str, str]], depth: int
) -> None:
    if not isinstance(g, dict):
        errors.append((path, "must be an object with 'match' and 'conditions'"))
        return
    if g.get("match") not in MATCHES:
        errors.append((path, f"'match' must be 'all' or 'any', not {g.get('match')!r}"))
    conds = g.get("conditions")
    if not isinstance(conds, list):
        errors.append((path, "'conditions' must be a list"))
        return
    for i, c in enumerate(conds):
        cpath = f"{path}conditions[{i}]"
        if isinstance(c, dict) and "kind" not in c and "conditions" in c:
            if depth >= 1:
                errors.append((cpath, "groups nest only one level"))
            else:
                _check_group(c, cpath + ".", errors, depth + 1)
        else:
            _check_condition(c, cpath, errors)


def parse_rules(text: str) -> dict[str, t.Any]:
    """Rules typed as JSON, validated; :class:`SegmentRuleError` otherwise."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else exc
        raise SegmentRuleError([("rules", f"Not valid JSON: {reason}")]) from None
    return validate_rules(data)


def check_name(name: t.Any) -> str:
    """A segment name, stripped; :class:`SegmentRuleError` when unusable."""
    if not isinstance(name, str) or not name.strip():
        raise SegmentRuleError([("name", "a name is required")])
    problem = _check_text(name.strip(), "a name", MAX_KEY)
    if problem:
        raise SegmentRuleError([("name", problem)])
    return name.strip()


def validate_rules(rules: t.Any) -> dict[str, t.Any]:
    """Return ``rules`` when valid; raise :class:`SegmentRuleError` otherwise."""
    errors: list[tuple[str, str]] = []
    problem = _check_anywhere(rules, 0)
    if problem:
        raise SegmentRuleError([("rules", problem)])
    _check_group(rules, "", errors, 0)
    if errors:
        raise SegmentRuleError(errors)
    return t.cast("dict[str, t.Any]", rules)
