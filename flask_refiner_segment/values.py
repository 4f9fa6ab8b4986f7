"""The request-path side of the payload: check the signal's arguments and
convert their values to JSON types (SPEC §1: nothing is silently dropped).

:func:`normalize_completion` runs on the host's request path, so the common
types (``str``, ``int``, ``float``, ``bool``, ``None``, ``list``, ``dict``) take a
fast path. :mod:`.payload` re-exports it; other modules import it from there.
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

from ._compat import fromisoformat

#: Called with a type name when a value of that type was converted with ``str()``.
OnConvert = Callable[[str], None]

#: Deeper nesting is refused (it is most likely a reference cycle).
MAX_DEPTH = 32

#: Python refuses to turn larger integers into text, so JSON cannot hold them.
_MAX_INT = 10**4000
_UTC = dt.timezone.utc
_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class InvalidCompletion(ValueError):
    """The signal's payload cannot be delivered; ``str(exc)`` says why."""


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
    """``value`` as a plain ``str`` that encodes to UTF-8.

    Surrogates (possible after decoding ``"\\ud800"`` from JSON) cannot be
    encoded: a valid pair becomes its character, a lone one U+FFFD.
    """
    if type(value) is not str:
        value = str.__str__(value)
    if value.isascii():
        return value
    try:
        value.encode()
    except UnicodeEncodeError:
        utf16 = value.encode("utf-16-le", "surrogatepass")
        return utf16.decode("utf-16-le", "replace")
    return value


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
        return value if value.isascii() else text(value)
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
        return key if key.isascii() else text(key)
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


def normalize_completion(
    *,
    user_id: object,
    survey: object,
    response: object,
    account: object = None,
    user_traits: object = None,
    on_convert: OnConvert | None = None,
) -> dict[str, t.Any]:
    """Validate the ``survey_completed`` keyword arguments (SPEC §1) and return
    the JSON-safe *completion*::

        {"user_id": str,
         "survey": {"id": str, "name": str | None,
                    "questions": [{"key": str, "text": str | None,
                                   "type": str | None,  # lower-cased
                                   "trait": str | None,
                                   "scope": "user" | "account"}, ...]},
         "response": {"id": str, "completed_at": str | None, "answers": {...}},
         "account": {"id": str, "traits": {...}} | None,
         "user_traits": {...}}

    Ids may be ``str``, ``int`` or ``UUID`` and come out as ``str``; a blank
    string counts as missing. ``completed_at`` is a ``datetime`` (naive means
    UTC) or an ISO-8601 string, written as ``2026-11-28T10:30:00.123Z``, or
    ``None`` when absent. An account without an id is ``None``. Values inside
    answers and traits are converted by :func:`to_json`;
    ``on_convert`` gets the type name of each value converted with ``str()``.

    :raise InvalidCompletion: with a reason naming the offending field.
    """
    uid = _id(user_id, "user_id")
    if not isinstance(survey, Mapping):
        raise InvalidCompletion(f"survey must be a mapping, got {_tn(survey)}")
    if not isinstance(response, Mapping):
        raise InvalidCompletion(f"response must be a mapping, got {_tn(response)}")
    rid = _id(response.get("id"), "response id")
    answers = response.get("answers")
    if not isinstance(answers, Mapping):
        raise InvalidCompletion(
            f"response answers must be a mapping, got {_tn(answers)}"
        )
    sid = _id(survey.get("id"), "survey id")
    name = survey.get("name")
    return {
        "user_id": uid,
        "survey": {
            "id": sid,
            "name": None if name is None else text(str(name)),
            "questions": _questions(survey.get("questions")),
        },
        "response": {
            "id": rid,
            "completed_at": _completed_at(response.get("completed_at")),
            "answers": _convert(answers, "response answers", on_convert),
        },
        "account": _account(account, on_convert),
        "user_traits": _convert(
            _mapping_or_empty(user_traits, "user_traits"), "user_traits", on_convert
        ),
    }


def _tn(value: object) -> str:
    return type(value).__name__


def _id(value: object, what: str) -> str:
    if isinstance(value, str):
        if value.strip():
            return text(value)
        raise InvalidCompletion(f"{what} is empty")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    if value is None:
        raise InvalidCompletion(f"{what} is missing")
    raise InvalidCompletion(f"{what} must be a str, int or UUID, got {_tn(value)}")


def _mapping_or_empty(value: object, what: str) -> Mapping[t.Any, t.Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidCompletion(f"{what} must be a mapping, got {_tn(value)}")
    return value


def _convert(
    value: Mapping[t.Any, t.Any], what: str, on_convert: OnConvert | None
) -> dict[str, t.Any]:
    try:
        return t.cast("dict[str, t.Any]", to_json(value, on_convert))
    except UnsupportedValue as exc:
        raise InvalidCompletion(f"{what}: {exc}") from None


def _completed_at(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        iso = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
        try:
            value = fromisoformat(iso)
        except ValueError:
            raise InvalidCompletion(
                f"response completed_at is not an ISO-8601 date-time: {iso[:40]!r}"
            ) from None
    if not isinstance(value, dt.datetime):
        raise InvalidCompletion(
            "response completed_at must be a datetime or an ISO-8601 string,"
            f" got {_tn(value)}"
        )
    try:
        return iso_utc(value)
    except OverflowError:
        raise InvalidCompletion("response completed_at is out of range") from None


def _questions(raw: object) -> list[dict[str, t.Any]]:
    if raw is None:
        return []
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
        raise InvalidCompletion(f"survey questions must be a list, got {_tn(raw)}")
    questions: list[dict[str, t.Any]] = []
    seen: set[str] = set()
    for i, q in enumerate(raw):
        if not isinstance(q, Mapping):
            raise InvalidCompletion(f"survey question {i} must be a mapping")
        key = q.get("key")
        if not isinstance(key, str):
            raise InvalidCompletion(
                f"survey question {i} needs a str 'key', got {_tn(key)}"
            )
        key = text(key)
        if key in seen:
            raise InvalidCompletion(f"survey question key {key!r} appears twice")
        seen.add(key)
        scope = q.get("scope")
        if scope is not None and scope not in ("user", "account"):
            raise InvalidCompletion(
                f"survey question {key!r}: scope must be 'user' or 'account',"
                f" got {scope!r}"
            )
        kind, trait, label = q.get("type"), q.get("trait"), q.get("text")
        if isinstance(kind, enum.Enum):
            kind = kind.value
        for field, field_value in (("type", kind), ("trait", trait)):
            if field_value is not None and not isinstance(field_value, str):
                raise InvalidCompletion(
                    f"survey question {key!r}: {field} must be a str,"
                    f" got {_tn(field_value)}"
                )
        questions.append(
            {
                "key": key,
                "text": None if label is None else text(str(label)),
                "type": (text(kind).strip().lower() or None) if kind else None,
                "trait": (text(trait).strip() or None) if trait else None,
                "scope": "account" if scope == "account" else "user",
            }
        )
    return questions


def _account(account: object, on_convert: OnConvert | None) -> dict[str, t.Any] | None:
    if account is None:
        return None
    if not isinstance(account, Mapping):
        raise InvalidCompletion(f"account must be a mapping, got {_tn(account)}")
    traits = _mapping_or_empty(account.get("traits"), "account traits")
    aid = account.get("id")
    if aid is None or (isinstance(aid, str) and not aid.strip()):
        return None
    return {
        "id": _id(aid, "account id"),
        "traits": _convert(traits, "account traits", on_convert),
    }
