"""JSON values as the inbound tables hold them: checks and projections."""

from __future__ import annotations

import json
import math
import re
import typing as t

from ..core.values import MAX_DEPTH

_DECIMAL = re.compile(
    r"-?(?:0|[1-9][0-9]{0,30})(?:\.[0-9]{1,30})?(?:[eE][-+]?[0-9]{1,3})?"
)


def check_value(value: t.Any, depth: int) -> str | None:
    """Why a JSON value cannot be stored, or ``None``."""
    if depth > MAX_DEPTH:
        return f"is nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, dict):
        values: t.Iterable[t.Any] = value.values()
    elif isinstance(value, list):
        values = value
    elif isinstance(value, float) and not math.isfinite(value):
        return "holds a number out of range"
    else:
        return None
    for item in values:
        if isinstance(item, (dict, list, float)):
            problem = check_value(item, depth + 1)
            if problem:
                return problem
    return None


def scalar_projection(value: t.Any) -> tuple[str, str | None, float | None]:
    """``(value_type, value_text, value_num)`` of a trait value."""
    if value is None:
        return "null", None, None
    if isinstance(value, bool):
        return "boolean", "true" if value else "false", None
    if isinstance(value, (int, float)):
        try:
            num: float | None = float(value)
        except OverflowError:
            num = None
        return "number", json.dumps(value), num
    if isinstance(value, str):
        num = None
        if len(value) <= 80 and _DECIMAL.fullmatch(value):
            num = float(value)
            if not math.isfinite(num):
                num = None
        return "string", value, num
    if isinstance(value, list):
        return "array", None, None
    return "object", None, None


def json_type(value: t.Any) -> str:
    """The JSON type of a value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def short(value: t.Any) -> str:
    """A value cut to 60 characters, for error messages."""
    text = (
        json.dumps(value, ensure_ascii=True)
        if not isinstance(value, str)
        else repr(value)
    )
    return text if len(text) <= 60 else text[:57] + "..."
