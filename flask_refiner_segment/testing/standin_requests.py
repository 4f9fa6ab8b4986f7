"""What the Segment stand-in checks in a request, the way Segment documents it.

Segment's limits, a JSON reader that also measures each message of a batch (so
only long messages need encoding again), the reason Segment would drop a
message, and the JSON answers of the Tracking API.
"""

from __future__ import annotations

import json
import re
import typing as t

from werkzeug.wrappers import Response

MAX_MESSAGE_BYTES = 32 * 1024
MAX_REQUEST_BYTES = 500 * 1024
MAX_BATCH_MESSAGES = 2500
MAX_MESSAGE_ID = 100
TYPES = ("identify", "track", "group", "page", "screen", "alias")

_SCAN: t.Callable[[str, int], tuple[t.Any, int]]
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_WS = re.compile(r"[ \t\n\r]*")


def json_response(data: t.Any, status: int = 200, **headers: str) -> Response:
    """``data`` as a JSON answer."""
    return Response(json.dumps(data), status, headers, mimetype="application/json")


def error_response(status: int, code: str, message: str, **headers: str) -> Response:
    """An error the way Segment answers one."""
    return json_response(
        {"success": False, "code": code, "message": message}, status, **headers
    )


def _skip(text: str, i: int) -> int:
    return _WS.match(text, i).end()  # type: ignore[union-attr]


def _next(text: str, i: int, close: str) -> tuple[int, bool]:
    """Skip to the next item after ``,`` (``True``) or to ``close`` (``False``)."""
    i = _skip(text, i)
    if text[i : i + 1] == ",":
        return _skip(text, i + 1), True
    if text[i : i + 1] != close:
        raise ValueError(f"expected ',' or {close!r} at {i}")
    return i, False


def load_body(text: str) -> tuple[t.Any, list[int] | None]:
    """``json.loads(text)``, plus the length in characters of each item of the
    top-level ``batch`` array, so that only long items need measuring."""
    i = _skip(text, 0)
    if text[i : i + 1] != "{":
        return json.loads(text), None
    body: dict[str, t.Any] = {}
    spans: list[int] | None = None
    try:
        i = _skip(text, i + 1)
        more = text[i : i + 1] != "}"
        while more:
            if text[i : i + 1] != '"':
                raise ValueError(f"expected a key at {i}")
            key, i = _SCAN(text, i)
            i = _skip(text, i)
            if text[i : i + 1] != ":":
                raise ValueError(f"expected ':' at {i}")
            i = _skip(text, i + 1)
            if key != "batch" or text[i : i + 1] != "[":
                body[key], i = _SCAN(text, i)
                spans = None if key == "batch" else spans
            else:
                body[key], spans, i = [], [], _skip(text, i + 1)
                more = text[i : i + 1] != "]"
                while more:
                    item, end = _SCAN(text, i)
                    body[key].append(item)
                    spans.append(end - i)
                    i, more = _next(text, end, "]")
                i += 1
            i, more = _next(text, i, "}")
    except StopIteration as exc:
        raise ValueError(f"invalid JSON at {exc.value}") from None
    if _skip(text, i + 1) != len(text):
        raise ValueError(f"extra data at {i + 1}")
    return body, spans


def _has_id(value: t.Any) -> bool:
    if isinstance(value, str):
        return bool(value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def invalid_reason(m: t.Any) -> str | None:
    """Why Segment would drop message ``m`` (after answering 200), or ``None``."""
    if not isinstance(m, dict):
        return "not an object"
    kind, message_id = m.get("type"), m.get("messageId")
    if kind not in TYPES:
        return "missing or unknown type"
    if message_id is not None and not isinstance(message_id, str):
        return "messageId is not a string"
    if message_id is not None and len(message_id) > MAX_MESSAGE_ID:
        return "messageId over 100 characters"
    if kind == "alias" and not (
        _has_id(m.get("userId")) and _has_id(m.get("previousId"))
    ):
        return "alias without userId and previousId"
    if kind != "alias" and not (
        _has_id(m.get("userId")) or _has_id(m.get("anonymousId"))
    ):
        return "no_user_anon_id"
    if kind == "track" and not (isinstance(m.get("event"), str) and m["event"]):
        return "track without event"
    if kind == "group" and not _has_id(m.get("groupId")):
        return "group without groupId"
    for key in ("traits", "properties", "context", "integrations"):
        if key in m and not isinstance(m[key], dict):
            return f"{key} is not an object"
    return None
