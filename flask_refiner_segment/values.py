"""Conversion of survey values to JSON types (SPEC §1: nothing silently dropped)."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import typing as t
import uuid

OnConvert = t.Callable[[str], None]


def iso_utc(value: dt.datetime) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``; naive datetimes are UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def to_json(value: t.Any, on_convert: OnConvert | None = None) -> t.Any:
    """Return ``value`` made of JSON types only.

    ``Decimal`` becomes int or float, ``datetime`` an ISO-8601 UTC string, ``date``
    ``YYYY-MM-DD``, ``UUID`` its string, ``Enum`` its value, tuples and sets lists
    (sets sorted when possible), NaN and infinities their ``str``. Anything else
    is converted with ``str()`` and reported to ``on_convert`` by type name.
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): to_json(v, on_convert) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v, on_convert) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [to_json(v, on_convert) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=repr)
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_json(value.value, on_convert)
    if isinstance(value, t.Mapping):
        return {str(k): to_json(v, on_convert) for k, v in value.items()}
    if on_convert is not None:
        on_convert(type(value).__name__)
    return str(value)
