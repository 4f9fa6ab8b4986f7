"""Realistic messages that Segment sends to a destination, for the inbound demo."""

from __future__ import annotations

import datetime as dt
import typing as t
import uuid


def _common(n: int) -> dict[str, t.Any]:
    now = dt.datetime.now(dt.timezone.utc)
    stamp = (now - dt.timedelta(minutes=60 - n)).isoformat().replace("+00:00", "Z")
    return {
        "messageId": f"demo-{uuid.uuid4()}",
        "timestamp": stamp,
        "originalTimestamp": stamp,
        "receivedAt": stamp,
        "sentAt": stamp,
        "version": 2,
        "channel": "server",
        "context": {"library": {"name": "analytics-node", "version": "6.2.0"}},
        "integrations": {},
    }


def demo_batch() -> list[dict[str, t.Any]]:
    """Identify, group, track and page calls for the example's users."""
    messages: list[dict[str, t.Any]] = []
    people = {
        "ann": {"plan": "pro", "role": "admin", "company": {"name": "Acme Inc."}},
        "bob": {"plan": "free", "role": "member"},
        "cleo": {"plan": "starter", "role": "member", "company": {"name": "Globex"}},
    }
    for user_id, traits in people.items():
        messages.append(
            {
                **_common(len(messages)),
                "type": "identify",
                "userId": user_id,
                "traits": traits,
            }
        )
    for user_id, group_id, traits in [
        ("ann", "acct-acme", {"name": "Acme Inc.", "plan": "pro", "employees": 120}),
        ("cleo", "acct-globex", {"name": "Globex", "plan": "starter", "employees": 12}),
    ]:
        messages.append(
            {
                **_common(len(messages)),
                "type": "group",
                "userId": user_id,
                "groupId": group_id,
                "traits": traits,
            }
        )
    for user_id, times in [("ann", 4), ("cleo", 1), ("bob", 2)]:
        for _ in range(times):
            messages.append(
                {
                    **_common(len(messages)),
                    "type": "track",
                    "userId": user_id,
                    "event": "Report Exported",
                    "properties": {"format": "csv", "rows": 1200},
                }
            )
    messages.append(
        {
            **_common(len(messages)),
            "type": "page",
            "userId": "ann",
            "name": "Pricing",
            "properties": {"path": "/pricing"},
        }
    )
    return messages
