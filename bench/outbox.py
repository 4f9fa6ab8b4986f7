"""The outbox's cost with its size: a drain's claim and mark_sent, the sweep's
recovery query, and the prune rate.

Part ``outbox`` of ``python -m bench`` (``python -m bench --only outbox``;
``python -m bench.outbox [options]`` is the same run). For each size N
(``--outbox-sizes``, default 1k, 100k and 1M) on PostgreSQL and SQLite, on
fresh tables: bulk-load N deliveries in one server-side statement
(``generate_series`` on PostgreSQL, a recursive CTE on SQLite), all sent 45
days ago but the newest :data:`PENDING`, which are pending and due; ANALYZE.
Then, :data:`ROUNDS` times: ``claims.claim`` of 500 and ``outbox.mark_sent`` of
them (each timed), then (untimed) the same rows put back to pending, so every
round sees the same outbox. Also timed: ``outbox.release_stale`` (what the
periodic sweep runs) and ``retention.prune`` of the N − 500 old sent rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import time
import typing as t

import sqlalchemy as sa
from flask_refiner_segment.outbound import claims
from flask_refiner_segment.outbound import outbox
from flask_refiner_segment.outbound import retention
from flask_refiner_segment.state import EXTENSION_KEY
from flask_refiner_segment.tables.base import utcnow

from . import hostapp
from ._util import median

WS = "default"
PENDING = 500
CLAIM = 500
ROUNDS = 20
#: ~400 bytes of completion JSON, the same in every row.
PAYLOAD = (
    '{"account":null,"response":{"answers":{"how_likely":9,"role":"Engineer"},'
    '"completed_at":"2026-11-28T12:00:00Z","id":"r"},"survey":{"id":"nps",'
    '"name":"NPS Survey","questions":[{"key":"how_likely","scope":"user",'
    '"text":"How likely are you to recommend us to a friend or colleague?",'
    '"trait":null,"type":"nps"},{"key":"role","scope":"user","text":"Role",'
    '"trait":null,"type":null}]},"user_id":"u","user_traits":{"email":"u@x.io"}}'
)
COLUMNS = (
    "workspace_id, response_id, survey_id, user_id, content_hash, payload, status,"
    " nps_score, attempts, created_at, updated_at, next_attempt_at, sent_at"
)


@dataclasses.dataclass
class OutboxResult:
    database: str
    rows: int
    load_s: float
    claim_ms: float
    mark_sent_ms: float
    #: Rows each claim returned (always ``CLAIM`` when the claim works).
    claimed: list[int]
    release_stale_ms: float
    pruned: int
    prune_s: float
    #: The plans of the claim and of a prune batch (PostgreSQL), first lines.
    plan: str = ""

    @property
    def prune_rows_per_s(self) -> float:
        return self.pruned / self.prune_s if self.prune_s else 0.0


def run(
    label: str, database_url: str, redis_url: str, sizes: t.Sequence[int]
) -> list[OutboxResult]:
    """Measure every size on ``database_url`` (fresh tables for each)."""
    results = []
    for n in sizes:
        app = hostapp.create_fresh_app(
            {"BENCH_DATABASE_URL": database_url, "BENCH_REDIS_URL": redis_url}
        )
        db = app.extensions["bench_db"]
        try:
            with app.app_context():
                results.append(_measure(label, app, n))
        finally:
            with app.app_context():
                db.drop_all()
                db.engine.dispose()
    return results


def _measure(label: str, app: t.Any, n: int) -> OutboxResult:
    state = app.extensions[EXTENSION_KEY]
    engine = state.db.engine
    table = state.tables.outbound.Delivery.__table__
    load_s = load(engine, n)
    claim_times, marks, claimed = [], [], []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        rows = claims.claim(state, WS, CLAIM)
        claim_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        outbox.mark_sent(state, rows, 200)
        marks.append(time.perf_counter() - started)
        claimed.append(len(rows))
        with engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.id.in_([r.id for r in rows]))
                .values(status="pending", next_attempt_at=utcnow(), sent_at=None)
            )
    stale = []
    for _ in range(5):
        started = time.perf_counter()
        outbox.release_stale(state)
        stale.append(time.perf_counter() - started)
    plan = _plan(engine, table) if engine.dialect.name == "postgresql" else ""
    started = time.perf_counter()
    pruned = retention.prune(state, 30).total
    prune_s = time.perf_counter() - started
    return OutboxResult(
        label,
        n,
        load_s,
        median(claim_times) * 1000,
        median(marks) * 1000,
        claimed,
        median(stale) * 1000,
        pruned,
        prune_s,
        plan,
    )


def load(engine: sa.Engine, n: int) -> float:
    """Insert ``n`` deliveries server-side; returns the seconds (ANALYZE too)."""
    now = utcnow()
    old = now - dt.timedelta(days=45)
    pending = f"i > {n - PENDING}"
    select = (
        f"SELECT '{WS}', 'r' || i, 'nps', 'u' || (i % 10000), {{hash}},"
        f" :payload, CASE WHEN {pending} THEN 'pending' ELSE 'sent' END, i % 11, 1,"
        f" :old, CASE WHEN {pending} THEN :now ELSE :old END,"
        f" CASE WHEN {pending} THEN :due END,"
        f" CASE WHEN {pending} THEN NULL ELSE :old END"
    )
    name = "refiner_segment_delivery"
    if engine.dialect.name == "postgresql":
        sql = (
            f"INSERT INTO {name} ({COLUMNS})"
            + select.format(hash="lpad(i::text, 64, '0')")
            + " FROM generate_series(1, :n) AS i"
        )
    else:
        sql = (
            "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s"  # noqa: S608 - constants
            f" WHERE i < :n) INSERT INTO {name} ({COLUMNS})"
            + select.format(hash="printf('%064d', i)")
            + " FROM s"
        )
    stmt = sa.text(sql).bindparams(
        sa.bindparam("old", type_=sa.DateTime),
        sa.bindparam("now", type_=sa.DateTime),
        sa.bindparam("due", type_=sa.DateTime),
    )
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            stmt,
            {
                "n": n,
                "payload": PAYLOAD,
                "old": old,
                "now": now,
                "due": now - dt.timedelta(minutes=1),
            },
        )
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(sa.text(f"VACUUM ANALYZE {name}"))
        else:
            conn.execute(sa.text("ANALYZE"))
        conn.commit()
    return time.perf_counter() - started


def _plan(engine: sa.Engine, table: sa.Table) -> str:
    """The first lines of the plans of the claim's locking SELECT and of one
    prune batch."""
    now = utcnow()
    due = claims._locked_due(
        table,
        sa.and_(table.c.status == "pending", table.c.next_attempt_at <= now),
        {WS: CLAIM},
        now,
    )
    old = sa.and_(
        table.c.status.in_(retention.FINISHED),
        table.c.updated_at < retention.cutoff(30),
    )
    prune = sa.select(table.c.id).where(old).limit(retention.BATCH_SIZE)
    plans = []
    with engine.connect() as conn:
        for name, stmt in (("claim", due), ("prune batch's SELECT", prune)):
            sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))
            lines = [r[0] for r in conn.execute(sa.text("EXPLAIN " + sql))]
            plans.append(f"{name}:\n" + "\n".join(lines[:12]))
        conn.rollback()
    return "\n".join(plans)


def report(rep: t.Any, results: list[OutboxResult]) -> None:
    """Print the table (and keep the results for ``--json``)."""
    rep.data["outbox"] = [
        {**dataclasses.asdict(r), "prune_rows_per_s": r.prune_rows_per_s}
        for r in results
    ]
    base = {r.database: r for r in results if r.rows == min(x.rows for x in results)}

    def ratio(r: OutboxResult, attr: str) -> str:
        first = getattr(base[r.database], attr)
        return f"{getattr(r, attr) / first:.2f}" if first else "–"

    rep.table(
        f"7. Outbox size: claim + mark_sent of {CLAIM} with {PENDING} pending and"
        f" the rest sent, median of {ROUNDS}; the sweep's release_stale; prune",
        [
            "database",
            "rows",
            "claim ms",
            "÷ smallest",
            "mark_sent ms",
            "÷ smallest",
            "release_stale ms",
            "pruned",
            "prune rows/s",
        ],
        [
            [
                r.database,
                f"{r.rows:,}",
                f"{r.claim_ms:.1f}",
                ratio(r, "claim_ms"),
                f"{r.mark_sent_ms:.1f}",
                ratio(r, "mark_sent_ms"),
                f"{r.release_stale_ms:.2f}",
                f"{r.pruned:,}",
                f"{r.prune_rows_per_s:,.0f}",
            ]
            for r in results
        ],
        right=range(1, 9),
    )
    largest = max(results, key=lambda r: (r.database == "PostgreSQL", r.rows))
    if largest.plan:
        rep.line(f"\nPlans at {largest.rows:,} rows (PostgreSQL):\n")
        rep.line("    " + largest.plan.replace("\n", "\n    "))


if __name__ == "__main__":
    from .__main__ import main

    sys.exit(main(["--only", "outbox", *sys.argv[1:]]))
