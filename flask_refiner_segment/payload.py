"""Pure functions: validate a completion and build Segment's identify/group/track.

``normalize_completion`` runs on the host's request path and returns the JSON-safe
*completion* stored with the delivery; ``build_messages`` runs in the worker.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import typing as t
from collections.abc import Mapping
from collections.abc import Sequence

from .values import OnConvert
from .values import iso_utc
from .values import to_json

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
ELLIPSIS = "…"

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
#: Names an answer slug may not take (they would overwrite fixed fields).
_RESERVED = frozenset(
    {
        "last_survey_id",
        "last_survey_name",
        "last_survey_completed_at",
        "nps_score",
        "nps_group",
        "survey_id",
        "survey_name",
        "response_id",
        "completed_at",
        "answers",
        "truncated_answers",
    }
)


class InvalidCompletion(ValueError):
    """The signal's payload cannot be delivered; ``str(exc)`` says why."""


class MessageTooLarge(ValueError):
    """A message exceeds Segment's 32 KB limit even after truncation."""


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """Per-workspace choices for building messages."""

    trait_prefix: str = "refiner_"
    event_name: str = "Survey Completed"
    library_name: str = "flask-refiner-segment"
    library_version: str = "0.1.0"
    max_message_bytes: int = MAX_MESSAGE_BYTES


def dumps(obj: t.Any) -> str:
    """The compact JSON encoding used for sizes and requests."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def message_size(message: Mapping[str, t.Any]) -> int:
    """Bytes of ``message`` as sent."""
    return len(dumps(message).encode())


def content_hash(completion: Mapping[str, t.Any]) -> str:
    """sha256 of the canonical JSON of a completion (deduplicates signals)."""
    canonical = json.dumps(
        completion, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _id(value: t.Any, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise InvalidCompletion(f"{what} is required (a non-empty str or int)")
    return str(value)


def _mapping(value: t.Any, what: str, *, optional: bool = True) -> Mapping[str, t.Any]:
    if value is None and optional:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidCompletion(f"{what} must be a mapping, got {type(value).__name__}")
    return value


def _timestamp(value: t.Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, str):
        try:
            return iso_utc(dt.datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            pass
    raise InvalidCompletion(
        "response completed_at must be a datetime or ISO-8601 string"
    )


def _questions(raw: t.Any) -> list[dict[str, t.Any]]:
    if raw is None:
        return []
    if not isinstance(raw, (list, tuple)):
        raise InvalidCompletion("survey questions must be a list")
    questions = []
    for i, q in enumerate(raw):
        if not isinstance(q, Mapping) or not isinstance(q.get("key"), str):
            raise InvalidCompletion(f"survey question {i} needs a str 'key'")
        scope = q.get("scope") or "user"
        if scope not in ("user", "account"):
            raise InvalidCompletion(
                f"survey question {q['key']!r}: scope must be 'user' or 'account'"
            )
        trait = q.get("trait")
        questions.append(
            {
                "key": q["key"],
                "text": None if q.get("text") is None else str(q["text"]),
                "type": None if q.get("type") is None else str(q["type"]),
                "trait": None if trait in (None, "") else str(trait),
                "scope": scope,
            }
        )
    return questions


def normalize_completion(
    *,
    user_id: object,
    survey: object,
    response: object,
    account: object = None,
    user_traits: object = None,
    on_convert: OnConvert | None = None,
) -> dict[str, t.Any]:
    """Validate the ``survey_completed`` keyword arguments (SPEC §1).

    Returns ``{"user_id", "survey": {"id", "name", "questions"}, "response":
    {"id", "completed_at", "answers"}, "account": {"id", "traits"} | None,
    "user_traits"}`` with JSON values only. Raises :exc:`InvalidCompletion`.
    """
    if user_id is None or user_id == "":
        raise InvalidCompletion("missing user_id")
    uid = _id(user_id, "user_id")
    survey_map = _mapping(survey, "survey", optional=False)
    response_map = _mapping(response, "response", optional=False)
    rid = _id(response_map.get("id"), "response id")
    answers = response_map.get("answers")
    if not isinstance(answers, Mapping):
        raise InvalidCompletion(
            f"response answers must be a mapping, got {type(answers).__name__}"
        )
    account_map = _mapping(account, "account")
    account_out = None
    if account_map.get("id") not in (None, ""):
        account_out = {
            "id": _id(account_map["id"], "account id"),
            "traits": to_json(
                dict(_mapping(account_map.get("traits"), "account traits")), on_convert
            ),
        }
    name = survey_map.get("name")
    return {
        "user_id": uid,
        "survey": {
            "id": _id(survey_map.get("id"), "survey id"),
            "name": None if name is None else str(name),
            "questions": _questions(survey_map.get("questions")),
        },
        "response": {
            "id": rid,
            "completed_at": _timestamp(response_map.get("completed_at")),
            "answers": to_json(dict(answers), on_convert),
        },
        "account": account_out,
        "user_traits": to_json(dict(_mapping(user_traits, "user_traits")), on_convert),
    }


def slugify(text: str) -> str:
    """Lower-case, each run of non-alphanumerics one ``_``, trimmed of ``_``."""
    return _NON_ALNUM.sub("_", text.lower()).strip("_")


def nps_group(score: int) -> str:
    """``promoter`` 9–10, ``passive`` 7–8, ``detractor`` 0–6."""
    if score >= 9:
        return "promoter"
    return "passive" if score >= 7 else "detractor"


def _nps_score(value: t.Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and 0 <= value <= 10:
        return value
    return None


def trait_slugs(
    questions: Sequence[Mapping[str, t.Any]], answer_keys: t.Iterable[str]
) -> dict[str, str]:
    """Answer key → unique slug; collisions get ``_2``, ``_3`` in question order."""
    keys = list(answer_keys)
    present = set(keys)
    custom = {q["key"]: q.get("trait") for q in questions}
    ordered = [q["key"] for q in questions if q["key"] in present]
    seen = set(ordered)
    ordered += [k for k in keys if k not in seen]
    used = set(_RESERVED)
    slugs: dict[str, str] = {}
    for key in dict.fromkeys(ordered):
        base = slugify(custom.get(key) or key) or "answer"
        slug, n = base, 1
        while slug in used:
            n += 1
            slug = f"{base}_{n}"
        used.add(slug)
        slugs[key] = slug
    return slugs


def _message_id(
    workspace_id: str, response_id: str, version: str, message: dict[str, t.Any]
) -> str:
    """Same response, call, content and version -> same id; an edit -> new ids.

    ``version`` is the content hash of the whole completion, so an edited
    response gets three new messages even when one call's content is unchanged.
    """
    canonical = json.dumps(
        message, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    key = f"{workspace_id}\x00{response_id}\x00{version}\x00{message['type']}"
    digest = hashlib.sha256(f"{key}\x00{canonical}".encode()).hexdigest()
    return f"rs-{message['type']}-{digest[:48]}"


def _build(
    completion: Mapping[str, t.Any],
    answers: Mapping[str, t.Any],
    truncated: list[str],
    options: BuildOptions,
    workspace_id: str,
    version: str,
) -> list[dict[str, t.Any]]:
    prefix = options.trait_prefix
    survey, response = completion["survey"], completion["response"]
    account = completion.get("account")
    questions = survey.get("questions") or []
    by_key = {q["key"]: q for q in questions}
    slugs = trait_slugs(questions, answers)
    user_id = completion["user_id"]
    completed_at = response.get("completed_at")

    traits: dict[str, t.Any] = dict(completion.get("user_traits") or {})
    account_traits: dict[str, t.Any] = dict(account["traits"]) if account else {}
    flat: dict[str, t.Any] = {}
    nps: int | None = None
    for key, value in answers.items():
        name = prefix + slugs[key]
        question = by_key.get(key, {})
        flat[name] = value
        if question.get("scope") == "account":
            account_traits[name] = value
        else:
            traits[name] = value
        if question.get("type") == "nps" and nps is None:
            nps = _nps_score(value)
    traits[prefix + "last_survey_id"] = survey["id"]
    traits[prefix + "last_survey_name"] = survey.get("name")
    traits[prefix + "last_survey_completed_at"] = completed_at
    if nps is not None:
        traits[prefix + "nps_score"] = nps
        traits[prefix + "nps_group"] = nps_group(nps)

    context: dict[str, t.Any] = {
        "library": {"name": options.library_name, "version": options.library_version},
        "integration": {"name": "refiner", "version": options.library_version},
    }
    properties: dict[str, t.Any] = {
        "survey_id": survey["id"],
        "survey_name": survey.get("name"),
        "response_id": response["id"],
        "completed_at": completed_at,
        "answers": {slugs[k]: v for k, v in answers.items()},
        **flat,
    }
    if truncated:
        properties["truncated_answers"] = [slugs[k] for k in truncated]
    messages: list[dict[str, t.Any]] = [
        {"type": "identify", "userId": user_id, "traits": traits, "context": context}
    ]
    if account:
        messages.append(
            {
                "type": "group",
                "userId": user_id,
                "groupId": account["id"],
                "traits": account_traits,
                "context": context,
            }
        )
    messages.append(
        {
            "type": "track",
            "userId": user_id,
            "event": options.event_name,
            "properties": properties,
            "context": {**context, "groupId": account["id"]} if account else context,
        }
    )
    for message in messages:
        if completed_at is not None:
            message["timestamp"] = completed_at
        message["messageId"] = _message_id(
            workspace_id, response["id"], version, message
        )
    return messages


def build_messages(
    completion: Mapping[str, t.Any],
    options: BuildOptions,
    *,
    workspace_id: str = "default",
) -> list[dict[str, t.Any]]:
    """``[identify, group?, track]`` for one completion (SPEC §2), without ``sentAt``.

    Oversize messages get their longest free-text answers truncated (ending in
    ``…`` and listed in the track's ``truncated_answers``); raises
    :exc:`MessageTooLarge` when that is not enough.
    """
    answers: dict[str, t.Any] = dict(completion["response"]["answers"])
    truncated: list[str] = []
    version = content_hash(completion)[:16]
    limit = options.max_message_bytes
    while True:
        messages = _build(
            completion, answers, truncated, options, workspace_id, version
        )
        sizes = [message_size(m) for m in messages]
        over = max(size - limit for size in sizes)
        if over <= 0:
            return messages
        candidates = [
            k for k, v in answers.items() if isinstance(v, str) and v != ELLIPSIS
        ]
        if not candidates:
            worst = max(range(len(messages)), key=lambda i: sizes[i] - limit)
            raise MessageTooLarge(
                f"the {messages[worst]['type']} message is {sizes[worst]} bytes, over"
                f" Segment's {limit} byte limit, even with free-text answers truncated"
            )
        key = max(candidates, key=lambda k: len(answers[k].encode()))
        encoded = answers[key].encode()
        # The track carries an answer twice (nested and flat): cut half the excess
        # from each copy, plus room for the marker and the truncated_answers list.
        keep = max(0, len(encoded) - (over + 1) // 2 - 64 - len(key))
        answers[key] = encoded[:keep].decode(errors="ignore") + ELLIPSIS
        if key not in truncated:
            truncated.append(key)


def chunk_batches(
    groups: Sequence[Sequence[Mapping[str, t.Any]]],
    *,
    max_bytes: int = 475_000,
    max_messages: int = MAX_BATCH_MESSAGES,
) -> list[list[int]]:
    """Split per-delivery message groups into batch requests within the limits.

    A delivery's messages stay in one batch; returns lists of group indexes.
    """
    envelope = 200
    chunks: list[list[int]] = []
    current: list[int] = []
    size, count = envelope, 0
    for index, group in enumerate(groups):
        group_size = sum(message_size(m) + 2 for m in group)
        if current and (
            size + group_size > max_bytes or count + len(group) > max_messages
        ):
            chunks.append(current)
            current, size, count = [], envelope, 0
        current.append(index)
        size += group_size
        count += len(group)
    if current:
        chunks.append(current)
    return chunks
