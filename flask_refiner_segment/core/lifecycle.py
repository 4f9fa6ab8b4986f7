"""Survey lifecycle events: ``survey_shown`` / ``survey_dismissed`` signals as
``Survey Shown`` / ``Survey Dismissed`` tracks.

:func:`normalize_event` checks a signal's arguments into the JSON-safe *event*
stored as a delivery's payload; :func:`build_payload_messages` builds the
messages of any stored payload (an event, or a completion). Nothing here uses
Flask, the database or the network.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import typing as t
import uuid
from collections.abc import Mapping

from .completion import InvalidCompletion
from .completion import _id
from .completion import canonical_json
from .messages import BuildOptions
from .messages import Message
from .messages import build_messages
from .values import iso_utc
from .values import text

SHOWN = "survey_shown"
DISMISSED = "survey_dismissed"
KINDS = (SHOWN, DISMISSED)


def normalize_event(
    kind: str,
    *,
    user_id: object,
    survey: object,
    at: object = None,
    event_id: object = None,
) -> dict[str, t.Any]:
    """The stored form of one lifecycle signal::

        {"kind": "survey_shown" | "survey_dismissed", "event_id": str,
         "user_id": str, "survey": {"id": str, "name": str | None},
         "at": "2026-11-28T10:30:00.000Z"}

    ``survey`` is a mapping with ``id`` (and ``name``) as in ``survey_completed``,
    or the survey id itself. ``at`` defaults to now; ``event_id`` (the host's
    id of this showing, for deduplication at Segment) to a random one.

    :raise InvalidCompletion: with a reason naming the offending field.
    """
    if kind not in KINDS:
        raise InvalidCompletion(f"unknown lifecycle event {kind!r}")
    uid = _id(user_id, "user_id")
    name = None
    if isinstance(survey, Mapping):
        sid = _id(survey.get("id"), "survey id")
        raw_name = survey.get("name")
        name = None if raw_name is None else text(str(raw_name))
    else:
        sid = _id(survey, "survey id")
    if at is None:
        at = dt.datetime.now(dt.timezone.utc)
    if not isinstance(at, dt.datetime):
        raise InvalidCompletion(f"at must be a datetime, got {type(at).__name__}")
    when = iso_utc(at)
    return {
        "kind": kind,
        "event_id": uuid.uuid4().hex if event_id is None else _id(event_id, "id"),
        "user_id": uid,
        "survey": {"id": sid, "name": name},
        "at": when,
    }


def build_event_message(
    event: Mapping[str, t.Any], options: BuildOptions, *, workspace_id: str
) -> Message:
    """The ``track`` of a lifecycle event; its ``messageId`` is a hash of the
    workspace, the event name and the event (stable across retries)."""
    name = options.shown_event if event["kind"] == SHOWN else options.dismissed_event
    seed = [workspace_id, name, options.library_name, event]
    digest = hashlib.sha256(canonical_json(seed).encode()).hexdigest()[:48]
    version = options.library_version
    return {
        "type": "track",
        "messageId": f"rs-event-{digest}",
        "userId": event["user_id"],
        "event": name,
        "properties": {
            "survey_id": event["survey"]["id"],
            "survey_name": event["survey"].get("name"),
        },
        "timestamp": event["at"],
        "context": {
            "library": {"name": options.library_name, "version": version},
            "integration": {"name": "refiner", "version": version},
        },
    }


def build_payload_messages(
    payload: Mapping[str, t.Any], options: BuildOptions, *, workspace_id: str
) -> list[Message]:
    """The messages of a stored delivery payload: a lifecycle event's track, or
    a completion's identify/group/track (:func:`.messages.build_messages`)."""
    if payload.get("kind") in KINDS:
        return [build_event_message(payload, options, workspace_id=workspace_id)]
    return build_messages(payload, options, workspace_id=workspace_id)
