"""Delivery insight: finished deliveries per hour and per day, and latency.

Figures for the settings page's chart and ``status --json``. A delivery counts
in the hour (day) it became sent, failed or skipped (its ``updated_at``, read
through the ``(status, updated_at)`` index); latency is recorded → sent
(``sent_at - created_at``) of the deliveries sent in the last hour. Each query
runs on its own connection, never on the host's ``db.session``.
"""

from __future__ import annotations

import datetime as dt
import math
import typing as t

import sqlalchemy as sa

from ..tables import outbound as models
from ..tables.base import utcnow

if t.TYPE_CHECKING:
    from ..state import State

#: The statuses the chart stacks, bottom up.
SERIES = (models.SENT, models.FAILED, models.SKIPPED)
HOURS = 24
DAYS = 30
#: At most this many latencies are read for the percentiles (the newest).
LATENCY_SAMPLE = 100_000

Bucket = dict[str, t.Any]


def figures(
    state: State, workspace_id: str | None, now: dt.datetime | None = None
) -> dict[str, t.Any]:
    """``{"hourly": [24 buckets], "daily": [30 buckets], "latency": {...}}``.

    A bucket is ``{"start": "2026-11-28T10:00:00Z", "sent": n, "failed": n,
    "skipped": n}``, oldest first, the last one the current hour (day).
    ``latency`` is ``{"count": n, "p50": seconds, "p99": seconds}`` (``None``
    without deliveries sent in the last hour). ``workspace_id`` ``None``: all.
    """
    now = now or utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    hourly = _buckets(hour, dt.timedelta(hours=1), HOURS)
    daily = _buckets(day, dt.timedelta(days=1), DAYS)
    table = t.cast(sa.Table, state.tables.outbound.Delivery.__table__)
    with state.db.engine.connect() as conn:
        dialect = conn.dialect.name
        for unit, slots, start in (
            ("hour", hourly, hourly[0]["start_dt"]),
            ("day", daily, daily[0]["start_dt"]),
        ):
            key = _truncate(table.c.updated_at, unit, dialect)
            query = (
                sa.select(key.label("k"), table.c.status, sa.func.count())
                .where(table.c.status.in_(SERIES), table.c.updated_at >= start)
                .group_by(key, table.c.status)
            )
            if workspace_id is not None:
                query = query.where(table.c.workspace_id == workspace_id)
            index = {_label(b["start_dt"], unit): b for b in slots}
            for k, status, n in conn.execute(query):
                bucket = index.get(_normalize(k, unit))
                if bucket is not None:
                    bucket[status] += int(n)
        latency = _latency(conn, table, workspace_id, now)
    for bucket in (*hourly, *daily):
        bucket["start"] = bucket.pop("start_dt").strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"hourly": hourly, "daily": daily, "latency": latency}


def _buckets(last: dt.datetime, step: dt.timedelta, n: int) -> list[Bucket]:
    return [
        {"start_dt": last - step * (n - 1 - i), **{s: 0 for s in SERIES}}
        for i in range(n)
    ]


def _truncate(column: t.Any, unit: str, dialect: str) -> t.Any:
    if dialect == "postgresql":
        return sa.func.date_trunc(unit, column)
    fmt = "%Y-%m-%d %H" if unit == "hour" else "%Y-%m-%d"
    return sa.func.strftime(fmt, column)


def _label(value: dt.datetime, unit: str) -> str:
    return value.strftime("%Y-%m-%d %H" if unit == "hour" else "%Y-%m-%d")


def _normalize(key: t.Any, unit: str) -> str:
    if isinstance(key, dt.datetime):
        return _label(key, unit)
    return str(key)


def _latency(
    conn: sa.Connection,
    table: sa.Table,
    workspace_id: str | None,
    now: dt.datetime,
) -> dict[str, t.Any]:
    since = now - dt.timedelta(hours=1)
    query = (
        sa.select(table.c.created_at, table.c.sent_at)
        .where(
            table.c.status == models.SENT,
            table.c.updated_at >= since,
            table.c.sent_at >= since,
        )
        .order_by(table.c.updated_at.desc())
        .limit(LATENCY_SAMPLE)
    )
    if workspace_id is not None:
        query = query.where(table.c.workspace_id == workspace_id)
    seconds = sorted(
        max(0.0, (sent - created).total_seconds())
        for created, sent in conn.execute(query)
        if sent is not None and created is not None
    )
    return {
        "count": len(seconds),
        "p50": percentile(seconds, 50),
        "p99": percentile(seconds, 99),
    }


def percentile(ordered: t.Sequence[float], p: float) -> float | None:
    """The nearest-rank ``p``-th percentile of sorted values (``None`` if empty)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


def totals(buckets: t.Sequence[Bucket]) -> dict[str, int]:
    """The buckets' counts added up per status."""
    return {s: sum(int(b[s]) for b in buckets) for s in SERIES}
