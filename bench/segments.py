"""User segments: ``count()`` and ``is_member()`` over generated data.

Part ``segments`` of ``python -m bench`` (``python -m bench --only segments``;
``python -m bench.segments [options]`` is the same run). Generates profiles
(traits plan, seats, address {city, zip}), 2,000 accounts (trait tier), one
membership per profile, and events (5 names, properties ``{"total": n}``,
timestamps over the last 90 days), bulk-inserted with SQLAlchemy Core in
chunks, with ``random.Random(42)``: the same data on every database, then
``VACUUM ANALYZE`` on PostgreSQL (``ANALYZE`` on SQLite). Then
times each segment shape through the extension's public methods:
``segment_count()`` (best of 3) and ``is_member()`` (mean over 200 users).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import sys
import time
import typing as t

import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment import RefinerSegment
from flask_refiner_segment.state import EXTENSION_KEY
from flask_refiner_segment.tables.base import utcnow

from . import hostapp

WS = "default"
CHUNK = 10_000
ACCOUNTS = 2_000
SAMPLE = 200
PLANS = ["free", "starter", "pro", "enterprise"]
CITIES = ["Paris", "Berlin", "London", "Madrid", "Rome", "Lisbon"]
EVENTS = [
    "Order Completed",
    "Page Viewed",
    "Signed In",
    "Invite Sent",
    "Report Exported",
]
DAY = 86_400
#: Event times keep this far from a whole number of days before the load, so
#: that a ``within_days`` window gives the same answer for that long after it
#: (the windows end at the time of the query, minutes later on a large run).
MARGIN = 3_600

SHAPES: dict[str, dict[str, t.Any]] = {
    "trait eq (plan = pro)": {
        "match": "all",
        "conditions": [{"kind": "trait", "key": "plan", "op": "eq", "value": "pro"}],
    },
    "trait number + nested (all)": {
        "match": "all",
        "conditions": [
            {"kind": "trait", "key": "seats", "op": "gte", "value": 50},
            {"kind": "trait", "key": "address.city", "op": "eq", "value": "Paris"},
        ],
    },
    "event ≥ 3 in 30 days with property": {
        "match": "all",
        "conditions": [
            {
                "kind": "event",
                "name": "Order Completed",
                "op": "at_least",
                "count": 3,
                "within_days": 30,
                "where": {"key": "total", "op": "gte", "value": 50},
            }
        ],
    },
    "any(account trait, all(trait in, event ≤ 1 in 14 days))": {
        "match": "any",
        "conditions": [
            {"kind": "account_trait", "key": "tier", "op": "eq", "value": "enterprise"},
            {
                "match": "all",
                "conditions": [
                    {
                        "kind": "trait",
                        "key": "plan",
                        "op": "in",
                        "value": ["pro", "starter"],
                    },
                    {
                        "kind": "event",
                        "name": "Signed In",
                        "op": "at_most",
                        "count": 1,
                        "within_days": 14,
                    },
                ],
            },
        ],
    },
}


@dataclasses.dataclass
class LoadResult:
    database: str
    profiles: int
    events: int
    seconds: float


@dataclasses.dataclass
class SegmentResult:
    database: str
    shape: str
    members: int
    count_ms: float
    is_member_ms: float
    #: How many of the sampled users ``is_member()`` said are members.
    sampled_members: int
    sampled: int


def run(
    label: str, database_url: str, redis_url: str, n_profiles: int, n_events: int
) -> tuple[LoadResult, list[SegmentResult]]:
    """Load the generated data into ``database_url`` and time every shape."""
    app = hostapp.create_fresh_app(
        {"BENCH_DATABASE_URL": database_url, "BENCH_REDIS_URL": redis_url}
    )
    ext: RefinerSegment = app.extensions[EXTENSION_KEY].owner
    db = app.extensions["bench_db"]
    try:
        with app.app_context():
            loaded = LoadResult(
                label, n_profiles, n_events, load(app, n_profiles, n_events)
            )
            rnd = random.Random(7)
            results = []
            for name, rules in SHAPES.items():
                best = float("inf")
                for _ in range(3):
                    started = time.perf_counter()
                    members = ext.segment_count(rules)
                    best = min(best, time.perf_counter() - started)
                sample = [
                    f"user-{rnd.randrange(n_profiles):07d}" for _ in range(SAMPLE)
                ]
                started = time.perf_counter()
                hits = sum(ext.is_member(user, rules) for user in sample)
                per = (time.perf_counter() - started) / len(sample)
                results.append(
                    SegmentResult(
                        label, name, members, best * 1000, per * 1000, hits, SAMPLE
                    )
                )
    finally:
        with app.app_context():
            db.engine.dispose()
    return loaded, results


def load(app: Flask, n_profiles: int, n_events: int) -> float:
    """Insert the generated data (tables already empty); returns the seconds."""
    db = app.extensions["bench_db"]
    m = app.extensions[EXTENSION_KEY].tables.inbound
    rnd = random.Random(42)
    now = utcnow()
    started = time.perf_counter()
    users = [f"user-{i:07d}" for i in range(n_profiles)]
    accounts = [f"acct-{i:05d}" for i in range(ACCOUNTS)]

    def traits() -> t.Iterator[dict[str, t.Any]]:
        for u in users:
            yield _trait("user_id", u, "plan", rnd.choice(PLANS), now)
            yield _trait("user_id", u, "seats", rnd.randint(1, 100), now)
            address = {"city": rnd.choice(CITIES), "zip": rnd.randint(1000, 99999)}
            yield _trait("user_id", u, "address", address, now)

    def events() -> t.Iterator[dict[str, t.Any]]:
        for i in range(n_events):
            yield {
                "workspace_id": WS,
                "user_id": users[rnd.randrange(n_profiles)],
                "message_id": f"m{i}",
                "name": rnd.choice(EVENTS),
                "properties": {"total": rnd.randint(1, 100)},
                "timestamp": now - dt.timedelta(seconds=_age(rnd.randrange(90 * DAY))),
                "received_at": now,
            }

    seen = {"first_seen_at": now, "last_seen_at": now}
    with db.engine.begin() as conn:
        _chunks(
            conn,
            m.Profile.__table__,
            (
                {"workspace_id": WS, "user_id": u, **seen, "updated_at": now}
                for u in users
            ),
        )
        _chunks(conn, m.UserTrait.__table__, traits())
        _chunks(
            conn,
            m.Account.__table__,
            (
                {"workspace_id": WS, "group_id": g, **seen, "updated_at": now}
                for g in accounts
            ),
        )
        _chunks(
            conn,
            m.AccountTrait.__table__,
            (
                _trait(
                    "group_id", g, "tier", rnd.choice(["smb", "mid", "enterprise"]), now
                )
                for g in accounts
            ),
        )
        _chunks(
            conn,
            m.Membership.__table__,
            (
                {
                    "workspace_id": WS,
                    "user_id": u,
                    "group_id": accounts[i % len(accounts)],
                    **seen,
                }
                for i, u in enumerate(users)
            ),
        )
        _chunks(conn, m.Event.__table__, events())
    with db.engine.connect() as conn:
        command = "ANALYZE"
        if db.engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            # As autovacuum leaves a table at rest: statistics, and the
            # visibility map that lets index-only scans skip the table.
            command = "VACUUM ANALYZE"
        conn.execute(sa.text(command))
        conn.commit()
    return time.perf_counter() - started


def _age(seconds: int) -> int:
    """``seconds`` (an age drawn in 0..90 days) moved off day boundaries: its
    day kept, its time of day squeezed into 1 s .. one day − ``MARGIN``."""
    day, rest = divmod(seconds, DAY)
    return day * DAY + 1 + rest * (DAY - MARGIN - 1) // DAY


def _trait(
    owner: str, oid: str, key: str, value: object, now: dt.datetime
) -> dict[str, t.Any]:
    if isinstance(value, (int, float)):
        typ, text, num = "number", str(value), float(value)
    elif isinstance(value, str):
        typ, text, num = "string", value, None
    else:
        typ, text, num = "object", None, None
    return {
        "workspace_id": WS,
        owner: oid,
        "key": key,
        "value": value,
        "value_type": typ,
        "value_text": text,
        "value_num": num,
        "value_at": now,
        "updated_at": now,
    }


def _chunks(
    conn: sa.Connection, table: sa.Table, rows: t.Iterable[dict[str, t.Any]]
) -> None:
    buf = []
    for row in rows:
        buf.append(row)
        if len(buf) >= CHUNK:
            conn.execute(sa.insert(table), buf)
            buf = []
    if buf:
        conn.execute(sa.insert(table), buf)


if __name__ == "__main__":
    from .__main__ import main

    sys.exit(main(["--only", "segments", *sys.argv[1:]]))
