"""Helpers shared by the inbound tests: the host app, auth, Segment payloads.

No tests here (a helpers module, not collected by pytest).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import typing as t

import sqlalchemy as sa
from flask import Flask

from . import hostapp

API_KEY = "rs_in_test_2f9c1d"
URL = "/integrations/segment/inbound"
TABLES = (
    "refiner_segment_inbound_message",
    "refiner_segment_profile",
    "refiner_segment_user_trait",
    "refiner_segment_account",
    "refiner_segment_account_trait",
    "refiner_segment_membership",
    "refiner_segment_event",
    "refiner_segment_view",
)


def make_app(database_url: str, **config: t.Any) -> Flask:
    """The test host app (tests/hostapp.py) with an inbound key; Redis is not needed."""
    return hostapp.create_app(
        {
            "TESTING": True,
            "SQLALCHEMY_DATABASE_URI": database_url,
            "REFINER_SEGMENT_INBOUND_API_KEY": API_KEY,
            "REFINER_SEGMENT_REDIS_URL": "redis://127.0.0.1:1/0",
            **config,
        }
    )


def close_app(app: Flask) -> None:
    db = app.extensions["test_db"]
    with app.app_context():
        db.session.remove()
        if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
            db.drop_all()
        db.engine.dispose()


def basic(key: str = API_KEY, password: str = "") -> dict[str, str]:
    token = base64.b64encode(f"{key}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def segment_headers(key: str = API_KEY) -> dict[str, str]:
    """Headers of a partner-destination call as Segment sends them."""
    settings = base64.b64encode(json.dumps({"apiKey": key}).encode()).decode()
    return {
        **basic(key),
        "Content-Type": "application/json",
        "User-Agent": "Segment.io/1.0",
        "X-Segment-Settings": settings,
    }


def post(app: Flask, body: t.Any, headers: dict[str, str] | None = None) -> t.Any:
    """POST ``body`` (bytes as is, anything else as JSON) with Segment's headers."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return app.test_client().post(
        URL, data=data, headers=segment_headers() if headers is None else headers
    )


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def counts(app: Flask) -> dict[str, int]:
    """Rows per inbound table."""
    db = app.extensions["test_db"]
    query = sa.union_all(
        *(
            sa.select(
                sa.literal(name).label("t"), sa.func.count().label("n")
            ).select_from(sa.table(name))
            for name in TABLES
        )
    )
    with app.app_context(), db.engine.connect() as conn:
        return {row[0]: row[1] for row in conn.execute(query)}


def nothing_stored(app: Flask) -> bool:
    return not any(counts(app).values())


# -- payloads as Segment documents them (segment.com/docs/connections/spec) -----

_CONTEXT = {
    "active": True,
    "app": {"name": "InitechGlobal", "version": "545", "build": "3.0.1.545"},
    "ip": "8.8.8.8",
    "library": {"name": "analytics.js", "version": "2.11.1"},
    "locale": "en-US",
    "page": {
        "path": "/academy/",
        "referrer": "",
        "search": "",
        "title": "Analytics Academy",
        "url": "https://segment.com/academy/",
    },
    "timezone": "Europe/Amsterdam",
    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_2) AppleWebKit/537.36",
}


def _common(
    kind: str, message_id: str, user_id: str | None, at: str
) -> dict[str, t.Any]:
    msg: dict[str, t.Any] = {
        "anonymousId": "507f191e810c19729de860ea",
        "channel": "browser",
        "context": copy.deepcopy(_CONTEXT),
        "integrations": {"All": True, "Mixpanel": False, "Salesforce": False},
        "messageId": message_id,
        "originalTimestamp": at,
        "receivedAt": at,
        "sentAt": at,
        "timestamp": at,
        "type": kind,
        "version": 2,
    }
    if user_id is not None:
        msg["userId"] = user_id
    return msg


def identify(
    message_id: str = "ajs-identify-1",
    user_id: str | None = "97980cfea0067",
    at: str = "2026-02-23T22:28:55.111Z",
    traits: dict[str, t.Any] | None = None,
) -> dict[str, t.Any]:
    msg = _common("identify", message_id, user_id, at)
    msg["traits"] = (
        traits
        if traits is not None
        else {
            "name": "Peter Gibbons",
            "email": "peter@example.com",
            "plan": "premium",
            "logins": 5,
            "address": {
                "street": "6th St",
                "city": "San Francisco",
                "state": "CA",
                "postalCode": "94103",
                "country": "USA",
            },
        }
    )
    return msg


def group(
    message_id: str = "ajs-group-1",
    user_id: str | None = "97980cfea0067",
    group_id: str = "0e8c78ea9d97a7b8185e8632",
    at: str = "2026-02-23T22:29:10.000Z",
    traits: dict[str, t.Any] | None = None,
) -> dict[str, t.Any]:
    msg = _common("group", message_id, user_id, at)
    msg["groupId"] = group_id
    msg["traits"] = (
        traits
        if traits is not None
        else {
            "name": "Initech",
            "industry": "Technology",
            "employees": 329,
            "plan": "enterprise",
            "total billed": 830,
        }
    )
    return msg


def track(
    message_id: str = "ajs-track-1",
    user_id: str | None = "97980cfea0067",
    event: str = "Registered",
    at: str = "2026-02-23T22:30:00.000Z",
    properties: dict[str, t.Any] | None = None,
) -> dict[str, t.Any]:
    msg = _common("track", message_id, user_id, at)
    msg["event"] = event
    msg["properties"] = (
        properties
        if properties is not None
        else {
            "plan": "Pro Annual",
            "accountType": "Facebook",
            "items": [{"sku": "a-1"}],
        }
    )
    return msg


def page(
    message_id: str = "ajs-page-1",
    user_id: str | None = "97980cfea0067",
    at: str = "2026-02-23T22:31:00.000Z",
) -> dict[str, t.Any]:
    msg = _common("page", message_id, user_id, at)
    msg.update(
        name="Analytics Academy",
        category="Docs",
        properties={
            "title": "Analytics Academy",
            "url": "https://segment.com/academy/",
            "path": "/academy/",
            "referrer": "https://www.google.com/",
        },
    )
    return msg


def screen(
    message_id: str = "ios-screen-1",
    user_id: str | None = "97980cfea0067",
    at: str = "2026-02-23T22:32:00.000Z",
) -> dict[str, t.Any]:
    msg = _common("screen", message_id, user_id, at)
    msg["channel"] = "mobile"
    msg["context"]["device"] = {
        "manufacturer": "Apple",
        "model": "iPhone7,2",
        "type": "ios",
    }
    msg["context"]["os"] = {"name": "iPhone OS", "version": "8.1.3"}
    msg.update(name="Home", properties={"Feed Type": "private"})
    return msg


def alias(
    message_id: str = "ajs-alias-1",
    user_id: str | None = "507f191e81",
    previous_id: str = "97980cfea0067",
    at: str = "2026-02-23T22:40:00.000Z",
) -> dict[str, t.Any]:
    msg = _common("alias", message_id, user_id, at)
    msg["previousId"] = previous_id
    return msg


def delete(
    message_id: str = "regulation-delete-1",
    user_id: str = "97980cfea0067",
    at: str = "2026-02-24T09:00:00.000Z",
) -> dict[str, t.Any]:
    """A user deletion, as Segment forwards a regulation to destinations."""
    return {
        "type": "delete",
        "userId": user_id,
        "messageId": message_id,
        "channel": "server",
        "context": {"library": {"name": "unknown", "version": "unknown"}},
        "integrations": {},
        "receivedAt": at,
        "timestamp": at,
        "originalTimestamp": at,
        "sentAt": at,
        "version": 2,
    }


#: Older than any retention.
OLD = "2000-01-01T00:00:00.000Z"


def seed_inbound(app: Flask) -> None:
    """Inbound data of every kind: two profiles, an account, an event, a view."""
    batch = [
        identify(),
        identify("ajs-identify-2", "u-2", traits={"plan": "free"}),
        group(),
        track(at=OLD),
        page(at=OLD),
    ]
    assert post(app, {"batch": batch}).json["stored"] == 5
