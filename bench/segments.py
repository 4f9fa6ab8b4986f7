"""Benchmark segment evaluation: count() and is_member() over generated data.

    python bench/segments.py [--profiles 100000] [--events 1000000]
        [--sqlite PATH] [--postgres URL] [--only sqlite|postgresql]

Generates profiles (traits plan/seats/country/address.city), 2,000 accounts with
memberships, and events (5 names, properties {"total": n}, timestamps over the
last 90 days), bulk-inserted with SQLAlchemy Core in chunks; then times each
segment shape (count: best of 3; is_member: mean over 200 users).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import time

import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from flask import Flask  # noqa: E402
from flask_refiner_segment import RefinerSegment  # noqa: E402
from flask_refiner_segment.extension import EXTENSION_KEY  # noqa: E402
from flask_refiner_segment.segments import api  # noqa: E402
from flask_refiner_segment.segments.models import make_segment_models  # noqa: E402
from flask_sqlalchemy import SQLAlchemy  # noqa: E402

WS = "default"
CHUNK = 10_000
PLANS = ["free", "starter", "pro", "enterprise"]
CITIES = ["Paris", "Berlin", "London", "Madrid", "Rome", "Lisbon"]
EVENTS = [
    "Order Completed",
    "Page Viewed",
    "Signed In",
    "Invite Sent",
    "Report Exported",
]

SHAPES = {
    "trait eq": {
        "match": "all",
        "conditions": [{"kind": "trait", "key": "plan", "op": "eq", "value": "pro"}],
    },
    "trait num + nested (all)": {
        "match": "all",
        "conditions": [
            {"kind": "trait", "key": "seats", "op": "gte", "value": 50},
            {"kind": "trait", "key": "address.city", "op": "eq", "value": "Paris"},
        ],
    },
    "event >=3 in 30d where": {
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
    "mixed any/all + account": {
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


def make_app(url: str) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=url,
        SECRET_KEY="bench",
        REFINER_SEGMENT_REDIS_URL="redis://127.0.0.1:1/0",
    )
    db = SQLAlchemy()
    db.init_app(app)
    ext = RefinerSegment(db=db)
    ext.segment_models = make_segment_models(db)  # type: ignore[attr-defined]
    ext.init_app(app)
    app.extensions["bench_db"] = db
    return app


def _trait(owner: str, oid: str, key: str, value: object, now: dt.datetime) -> dict:
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


def _chunks(conn: sa.Connection, table: sa.Table, rows: object) -> None:
    buf = []
    for row in rows:  # type: ignore[attr-defined]
        buf.append(row)
        if len(buf) >= CHUNK:
            conn.execute(sa.insert(table), buf)
            buf = []
    if buf:
        conn.execute(sa.insert(table), buf)


def load(app: Flask, n_profiles: int, n_events: int) -> float:
    db = app.extensions["bench_db"]
    m = app.extensions[EXTENSION_KEY].ext.inbound
    rnd = random.Random(42)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # naive UTC, as stored
    start = time.perf_counter()
    with app.app_context():
        db.drop_all()
        db.create_all()
        with db.engine.begin() as conn:
            users = [f"user-{i:07d}" for i in range(n_profiles)]
            _chunks(
                conn,
                m.Profile.__table__,
                (
                    {
                        "workspace_id": WS,
                        "user_id": u,
                        "first_seen_at": now,
                        "last_seen_at": now,
                        "updated_at": now,
                    }
                    for u in users
                ),
            )

            def traits():
                for u in users:
                    yield _trait("user_id", u, "plan", rnd.choice(PLANS), now)
                    yield _trait("user_id", u, "seats", rnd.randint(1, 100), now)
                    yield _trait(
                        "user_id",
                        u,
                        "address",
                        {"city": rnd.choice(CITIES), "zip": rnd.randint(1000, 99999)},
                        now,
                    )

            _chunks(conn, m.UserTrait.__table__, traits())
            accounts = [f"acct-{i:05d}" for i in range(2000)]
            _chunks(
                conn,
                m.Account.__table__,
                (
                    {
                        "workspace_id": WS,
                        "group_id": g,
                        "first_seen_at": now,
                        "last_seen_at": now,
                        "updated_at": now,
                    }
                    for g in accounts
                ),
            )
            _chunks(
                conn,
                m.AccountTrait.__table__,
                (
                    _trait(
                        "group_id",
                        g,
                        "tier",
                        rnd.choice(["smb", "mid", "enterprise"]),
                        now,
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
                        "first_seen_at": now,
                        "last_seen_at": now,
                    }
                    for i, u in enumerate(users)
                ),
            )

            def events():
                for i in range(n_events):
                    yield {
                        "workspace_id": WS,
                        "user_id": users[rnd.randrange(n_profiles)],
                        "message_id": f"m{i}",
                        "name": rnd.choice(EVENTS),
                        "properties": {"total": rnd.randint(1, 100)},
                        "timestamp": now
                        - dt.timedelta(seconds=rnd.randrange(90 * 86400)),
                        "received_at": now,
                    }

            _chunks(conn, m.Event.__table__, events())
        if db.engine.dialect.name == "postgresql":
            with db.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").execute(
                    sa.text("ANALYZE")
                )
        else:
            with db.engine.begin() as conn:
                conn.execute(sa.text("ANALYZE"))
    return time.perf_counter() - start


def run(label: str, url: str, n_profiles: int, n_events: int) -> list[tuple]:
    app = make_app(url)
    secs = load(app, n_profiles, n_events)
    print(
        f"[{label}] loaded {n_profiles:,} profiles, {n_events:,} events in {secs:.1f}s",
        flush=True,
    )
    rnd = random.Random(7)
    out = []
    with app.app_context():
        for name, rules in SHAPES.items():
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                n = api.count(rules)
                best = min(best, time.perf_counter() - t0)
            sample = [f"user-{rnd.randrange(n_profiles):07d}" for _ in range(200)]
            t0 = time.perf_counter()
            for u in sample:
                api.is_member(u, rules)
            per = (time.perf_counter() - t0) / len(sample)
            out.append((label, name, n, best * 1000, per * 1000))
            print(
                f"  {name:28s} count={n:>7,}  count() {best * 1000:9.1f} ms"
                f"  is_member() {per * 1000:7.2f} ms",
                flush=True,
            )
        app.extensions["bench_db"].engine.dispose()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--profiles", type=int, default=100_000)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--sqlite", default="/tmp/refiner_segments_bench.db")
    p.add_argument(
        "--postgres",
        default=os.environ.get(
            "REFINER_BENCH_POSTGRES_URL",
            "postgresql+psycopg://postgres@127.0.0.1:5432/test_segments_bench",
        ),
    )
    p.add_argument("--only", choices=["sqlite", "postgresql"])
    a = p.parse_args()
    rows = []
    if a.only in (None, "sqlite"):
        if os.path.exists(a.sqlite):
            os.remove(a.sqlite)
        rows += run("SQLite", f"sqlite:///{a.sqlite}", a.profiles, a.events)
    if a.only in (None, "postgresql"):
        rows += run("PostgreSQL", a.postgres, a.profiles, a.events)
    print("\n| database | segment shape | members | count() ms | is_member() ms |")
    print("|---|---|---:|---:|---:|")
    for label, name, n, c, m in rows:
        print(f"| {label} | {name} | {n:,} | {c:.1f} | {m:.2f} |")


if __name__ == "__main__":
    main()
