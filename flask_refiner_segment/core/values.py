"""Values as JSON: convert the host's Python values to JSON types (nothing is
silently dropped), and clean text that databases cannot store.

:func:`to_json` runs on the host's request path, so the common types (``str``,
``int``, ``float``, ``bool``, ``None``, ``list``, ``dict``) take a fast path.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import math
import numbers
import typing as t
import uuid
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from collections.abc import Set

#: Called with a type name when a value of that type was converted with ``str()``.
OnConvert = Callable[[str], None]

#: Deeper nesting is refused (it is most likely a reference cycle).
MAX_DEPTH = 64

#: Python refuses to turn larger integers into text, so JSON cannot hold them.
_MAX_INT = 10**4000
_UTC = dt.timezone.utc
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class UnsupportedValue(ValueError):
    """A value that has no faithful JSON form; ``str(exc)`` says why."""


def iso_utc(value: dt.datetime) -> str:
    """ISO-8601 in UTC with milliseconds and ``Z``; a naive datetime is UTC.

    ``2026-11-28T10:30:00.123Z``. Microseconds are cut, not rounded.
    """
    if value.tzinfo is not None:
        value = value.astimezone(_UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def text(value: str) -> str:
    """``value`` as a plain ``str`` that encodes to UTF-8 and that databases store.

    Surrogates (possible after decoding ``"\\ud800"`` from JSON) cannot be
    encoded: a valid pair becomes its character, a lone one U+FFFD. NUL, which
    PostgreSQL cannot store in text or JSONB, becomes U+FFFD too.
    """
    if type(value) is not str:
        value = str.__str__(value)
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            utf16 = value.encode("utf-16-le", "surrogatepass")
            value = utf16.decode("utf-16-le", "replace")
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def to_json(value: t.Any, on_convert: OnConvert | None = None, depth: int = 0) -> t.Any:
    """Return ``value`` made of JSON types only (``str``, ``int``, ``float``,
    ``bool``, ``None``, ``list``, ``dict`` with ``str`` keys).

    - ``Decimal``: ``int`` when integral, else ``float``.
    - ``datetime``: ISO-8601 UTC string (:func:`iso_utc`); ``date``: ``YYYY-MM-DD``.
    - ``UUID``: its string. ``Enum``: its value, converted in turn.
    - tuples and other sequences: lists; sets: lists, sorted when the items
      can be compared, else ordered by their JSON text.
    - NaN and infinities (``float`` or ``Decimal``): ``"NaN"``, ``"Infinity"``,
      ``"-Infinity"``, since JSON has no such numbers.
    - ``bytes``: decoded as UTF-8 (invalid bytes become U+FFFD).
    - Other numbers (``numbers.Integral`` / ``numbers.Real``): ``int`` / ``float``.
    - Anything else: ``str(value)``. For ``bytes`` and for these,
      ``on_convert`` is called with the type's name so the caller can log it.

    :raise UnsupportedValue: nesting deeper than :data:`MAX_DEPTH`, two keys of
        a mapping that become the same string, an integer too large for JSON.
    """
    cls = type(value)
    if cls is str:
        return value if value.isascii() and "\x00" not in value else text(value)
    if cls is int:
        if -_MAX_INT < value < _MAX_INT:
            return value
        raise UnsupportedValue("an integer with more than 4000 digits")
    if cls is bool or value is None:
        return value
    if cls is float:
        return value if math.isfinite(value) else _NON_FINITE[repr(value)]
    if depth >= MAX_DEPTH:
        raise UnsupportedValue(f"values nested more than {MAX_DEPTH} levels deep")
    if cls is dict or isinstance(value, Mapping):
        return _mapping(value, on_convert, depth + 1)
    if cls is list or cls is tuple:
        return [to_json(v, on_convert, depth + 1) for v in value]
    return _other(value, on_convert, depth)


def _mapping(
    value: Mapping[t.Any, t.Any], on_convert: OnConvert | None, depth: int
) -> dict[str, t.Any]:
    out = {
        _key(k, on_convert, depth): to_json(v, on_convert, depth)
        for k, v in value.items()
    }
    if len(out) != len(value):
        seen: dict[str, t.Any] = {}
        for k in value:
            name = _key(k, on_convert, depth)
            if name in seen:
                raise UnsupportedValue(
                    f"the keys {seen[name]!r} and {k!r} both become {name!r}"
                )
            seen[name] = k
    return out


def _key(key: t.Any, on_convert: OnConvert | None, depth: int) -> str:
    """A mapping key as a string: as is, or the JSON text of its converted value."""
    if type(key) is str:
        return key if key.isascii() and "\x00" not in key else text(key)
    value = to_json(key, on_convert, depth)
    return value if isinstance(value, str) else _COMPACT.encode(value)


def _other(value: t.Any, on_convert: OnConvert | None, depth: int) -> t.Any:
    if isinstance(value, enum.Enum):
        return to_json(value.value, on_convert, depth + 1)
    if isinstance(value, str):
        return text(value)
    if isinstance(value, (bool, int)):
        return to_json(int(value), on_convert, depth)
    if isinstance(value, float):
        return to_json(float(value), on_convert, depth)
    if isinstance(value, decimal.Decimal):
        return _decimal(value)
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (Set, set, frozenset)):
        items = [to_json(v, on_convert, depth + 1) for v in value]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=lambda v: (type(v).__name__, _COMPACT.encode(v)))
    if isinstance(value, (bytes, bytearray, memoryview)):
        if on_convert is not None:
            on_convert(type(value).__name__)
        return text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, Sequence):
        return [to_json(v, on_convert, depth + 1) for v in value]
    if isinstance(value, numbers.Integral):
        return to_json(int(value), on_convert, depth)
    if isinstance(value, numbers.Real):
        return to_json(float(value), on_convert, depth)
    if on_convert is not None:
        on_convert(type(value).__name__)
    return text(str(value))


def _decimal(value: decimal.Decimal) -> int | float | str:
    if value.is_nan():
        return "NaN"
    if value.is_infinite():
        return "-Infinity" if value.is_signed() else "Infinity"
    if value == value.to_integral_value():
        # An exponent past 4000 digits has no int form JSON can carry.
        return int(value) if value.adjusted() < 4000 else str(value)
    number = float(value)
    return number if math.isfinite(number) else str(value)


def clean(value: t.Any) -> t.Any:
    """A parsed JSON ``value`` with every string and key made :func:`text`."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {text(k): clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean(v) for v in value]
    return value
