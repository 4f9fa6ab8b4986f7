"""Parse and validate what Segment posts: a message, an array or ``{"batch": [...]}``.

Every problem is an :class:`InboundError` naming the message (its index in the
request) and the reason, so the answer can say exactly what was wrong.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import typing as t

from .._compat import fromisoformat
from ..core.values import clean
from ..tables.inbound import ID_LENGTH
from .jsonvalues import check_value
from .jsonvalues import json_type
from .jsonvalues import short

#: The call types this destination stores.
KNOWN_TYPES = frozenset(
    {"identify", "group", "track", "page", "screen", "alias", "delete"}
)

#: A timestamp further ahead than this is taken as the time of receipt, so a
#: client with a wrong clock cannot pin a trait value forever.
FUTURE_TOLERANCE = dt.timedelta(minutes=5)

#: Message fields read, by their Segment spelling. Other spellings of the same
#: name (``user_id``, ``UserId``, ``message-id``) are accepted too.
FIELDS = (
    "type",
    "userId",
    "groupId",
    "previousId",
    "messageId",
    "timestamp",
    "originalTimestamp",
    "receivedAt",
    "sentAt",
    "traits",
    "properties",
    "event",
    "name",
    "category",
)
_CANONICAL = {f.lower(): f for f in FIELDS}
_TIME_FIELDS = ("timestamp", "originalTimestamp", "receivedAt", "sentAt")


class InboundError(Exception):
    """A request this destination answers with an error status."""

    def __init__(
        self, status: int, code: str, message: str, index: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.index = index

    def body(self) -> dict[str, t.Any]:
        """The JSON answer (Segment shows ``message`` in its debugger)."""
        data: dict[str, t.Any] = {"error": self.code, "message": self.message}
        if self.index is not None:
            data["index"] = self.index
        return data


@dataclasses.dataclass(slots=True)
class Message:
    """One validated message of a known type."""

    index: int
    type: str
    message_id: str
    user_id: str | None
    timestamp: dt.datetime
    group_id: str | None = None
    previous_id: str | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    traits: dict[str, t.Any] | None = None
    properties: dict[str, t.Any] | None = None


@dataclasses.dataclass(slots=True)
class Parsed:
    """A valid request: its known messages and the types of the unknown ones."""

    messages: list[Message]
    unsupported: list[str]
    total: int


def parse_body(raw: bytes, now: dt.datetime) -> Parsed:
    """Validate every message of a request body (``now`` is naive UTC).

    :raises InboundError: 400 for malformed JSON or any malformed message.
    """
    if not raw.strip():
        raise InboundError(400, "malformed_json", "The request body is empty.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InboundError(
            400, "malformed_json", "The request body is not UTF-8."
        ) from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
        if "\\u" in text:
            doc = clean(doc)
    except RecursionError:
        raise InboundError(
            400, "malformed_json", "The JSON is nested too deeply."
        ) from None
    except ValueError as exc:
        raise InboundError(400, "malformed_json", f"Malformed JSON: {exc}") from None

    if isinstance(doc, dict) and "batch" in doc and "type" not in doc:
        items = doc["batch"]
        if not isinstance(items, list):
            raise InboundError(
                400, "malformed_body", '"batch" must be an array of messages.'
            )
    elif isinstance(doc, list):
        items = doc
    elif isinstance(doc, dict):
        items = [doc]
    else:
        raise InboundError(
            400,
            "malformed_body",
            "The body must be a message object, an array of messages"
            ' or {"batch": [...]}.',
        )

    messages: list[Message] = []
    unsupported: list[str] = []
    for index, item in enumerate(items):
        try:
            message = _message(index, item, now)
        except RecursionError:
            raise InboundError(
                400, "malformed_message", f"message {index}: nested too deeply", index
            ) from None
        if isinstance(message, str):
            unsupported.append(message)
        else:
            messages.append(message)
    return Parsed(messages=messages, unsupported=unsupported, total=len(items))


def _message(index: int, item: t.Any, now: dt.datetime) -> Message | str:
    """A valid message, or the name of its unknown type."""

    def bad(reason: str) -> InboundError:
        return InboundError(
            400, "malformed_message", f"message {index}: {reason}", index
        )

    if not isinstance(item, dict):
        raise bad(f"not a JSON object but {json_type(item)}")
    m = _fields(item)
    kind = m.get("type")
    if kind is None:
        raise bad('missing "type"')
    if not isinstance(kind, str) or not kind.strip():
        raise bad('"type" must be a non-empty string')
    kind = kind.strip().lower()
    if kind not in KNOWN_TYPES:
        return kind

    times: dict[str, dt.datetime] = {}
    for field in _TIME_FIELDS:
        value = m.get(field)
        if value is not None:
            parsed = parse_timestamp(value)
            if parsed is None:
                raise bad(f'"{field}" is not an ISO-8601 timestamp: {short(value)}')
            times[field] = parsed
    timestamp = (
        times.get("timestamp")
        or times.get("originalTimestamp")
        or times.get("receivedAt", now)
    )
    if timestamp > now + FUTURE_TOLERANCE:
        timestamp = now

    message_id = _id(m, "messageId", bad, required=False)
    if message_id is None:
        message_id = derived_message_id(item)
    elif len(message_id) > ID_LENGTH:
        message_id = "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()

    msg = Message(
        index=index,
        type=kind,
        message_id=message_id,
        user_id=_id(m, "userId", bad, required=False),
        timestamp=timestamp,
    )
    if kind == "identify":
        msg.traits = _object(m, "traits", bad, keys=True)
    elif kind == "group":
        msg.group_id = _id(m, "groupId", bad, required=True)
        msg.traits = _object(m, "traits", bad, keys=True)
    elif kind == "track":
        event = m.get("event")
        if not isinstance(event, str) or not event:
            raise bad('a track needs "event", a non-empty string')
        if len(event) > ID_LENGTH:
            raise bad(f'"event" is longer than {ID_LENGTH} characters')
        msg.event = event
        msg.properties = _object(m, "properties", bad)
    elif kind in ("page", "screen"):
        msg.name = _text(m, "name", bad)
        msg.category = _text(m, "category", bad)
        msg.properties = _object(m, "properties", bad)
    elif kind == "alias":
        msg.previous_id = _id(m, "previousId", bad, required=True)
    return msg


def parse_timestamp(value: t.Any) -> dt.datetime | None:
    """An ISO-8601 string as naive UTC (no zone means UTC), or ``None``."""
    if not isinstance(value, str) or not 10 <= len(value) <= 64:
        return None
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = fromisoformat(text)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(dt.timezone.utc).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return None
    return parsed


def derived_message_id(item: dict[str, t.Any]) -> str:
    """The id of a message that has none: sha256 of its canonical JSON.

    ``sentAt`` (set anew on each attempt) and ``messageId`` are left out, so a
    retried copy gets the same id.
    """
    content = {k: v for k, v in item.items() if k not in ("sentAt", "messageId")}
    canonical = json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=True
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _fields(item: dict[str, t.Any]) -> dict[str, t.Any]:
    """The fields we read, by Segment spelling; the exact spelling wins."""
    out: dict[str, t.Any] = {}
    for key, value in item.items():
        canonical = _CANONICAL.get(key.replace("_", "").replace("-", "").lower())
        if canonical is None:
            continue
        if key == canonical:
            out[key] = value
        else:
            out.setdefault(canonical, value)
    return out


def _id(
    m: dict[str, t.Any],
    field: str,
    bad: t.Callable[[str], InboundError],
    *,
    required: bool,
) -> str | None:
    value = m.get(field)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None or value == "":
        if required:
            raise bad(f'missing "{field}"')
        return None
    if not isinstance(value, str):
        raise bad(f'"{field}" must be a string')
    if field != "messageId" and len(value) > ID_LENGTH:
        raise bad(f'"{field}" is longer than {ID_LENGTH} characters')
    return value


def _object(
    m: dict[str, t.Any],
    field: str,
    bad: t.Callable[[str], InboundError],
    *,
    keys: bool = False,
) -> dict[str, t.Any]:
    value = m.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad(f'"{field}" must be an object, not {json_type(value)}')
    if keys:
        for key in value:
            if len(key) > ID_LENGTH:
                raise bad(
                    f"{field} key {short(key)} is longer than {ID_LENGTH} characters"
                )
    problem = check_value(value, 0)
    if problem:
        raise bad(f'"{field}" {problem}')
    return value


def _text(
    m: dict[str, t.Any], field: str, bad: t.Callable[[str], InboundError]
) -> str | None:
    value = m.get(field)
    if value is None or isinstance(value, str):
        return value
    raise bad(f'"{field}" must be a string')


def _reject_constant(name: str) -> t.NoReturn:
    raise ValueError(f"{name} is not valid JSON")
