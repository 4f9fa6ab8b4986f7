"""The completion: the signal's arguments checked and made JSON-safe, its
canonical JSON and hash (deduplication), and its NPS score.

:func:`normalize_completion` runs on the host's request path, so the common
types take the fast path of :func:`.values.to_json`. Nothing here uses Flask,
the database or the network.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import typing as t
import uuid
from collections.abc import Mapping
from collections.abc import Sequence

from .._compat import fromisoformat
from .values import OnConvert
from .values import UnsupportedValue
from .values import iso_utc
from .values import text
from .values import to_json

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class InvalidCompletion(ValueError):
    """The signal's payload cannot be delivered; ``str(exc)`` says why."""


def normalize_completion(
    *,
    user_id: object,
    survey: object,
    response: object,
    account: object = None,
    user_traits: object = None,
    on_convert: OnConvert | None = None,
) -> dict[str, t.Any]:
    """Validate the ``survey_completed`` keyword arguments (the README's "The
    signal contract") and return the JSON-safe *completion*::

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


def canonical_json(value: t.Any) -> str:
    """Sorted keys, compact, non-ASCII kept: the encoding stored with a delivery."""
    return _CANONICAL.encode(value)


def content_hash(completion: Mapping[str, t.Any]) -> str:
    """sha256 hex of the canonical JSON (sorted keys, compact, UTF-8) of a
    completion; equal completions hash equal whatever their key order."""
    return hashlib.sha256(canonical_json(completion).encode()).hexdigest()


def nps_group(score: int) -> str:
    """``"promoter"`` for 9–10, ``"passive"`` for 7–8, ``"detractor"`` for 0–6."""
    if not 0 <= score <= 10:
        raise ValueError(f"an NPS score is 0 to 10, got {score}")
    if score >= 9:
        return "promoter"
    return "passive" if score >= 7 else "detractor"


def completion_nps_score(completion: Mapping[str, t.Any]) -> int | None:
    """The score of the first ``"nps"`` question answered 0–10, in question order."""
    answers = completion["response"]["answers"]
    for q in completion["survey"].get("questions") or ():
        if q.get("type") == "nps" and q["key"] in answers:
            score = _nps_score(answers[q["key"]])
            if score is not None:
                return score
    return None


def _nps_score(value: t.Any) -> int | None:
    """An int-like answer 0–10 (``9``, ``9.0``, ``"9"``), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return None
        value = int(value)
    elif isinstance(value, str):
        value = value.strip()
        if not (value.isascii() and value.isdigit() and len(value) <= 2):
            return None
        value = int(value)
    if isinstance(value, int) and 0 <= value <= 10:
        return value
    return None
