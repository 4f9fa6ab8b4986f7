"""Deliveries at chosen times, for the delivery insight tests (no tests here)."""

from __future__ import annotations

import datetime as dt
import typing as t

from flask_refiner_segment.tables.base import utcnow


def seed(
    app: t.Any,
    rows: list[tuple[str, float, float]],
    *,
    workspace_id: str = "default",
    now: dt.datetime | None = None,
) -> dt.datetime:
    """Insert finished deliveries: ``(status, hours ago, latency seconds)`` each.

    A delivery finished ``hours ago`` (its ``updated_at``; ``sent_at`` too when
    sent), recorded ``latency`` seconds earlier. Returns the ``now`` used.
    """
    now = now or utcnow()
    state = app.extensions["refiner_segment"]
    table = state.tables.outbound.Delivery.__table__
    values = []
    for n, (status, hours, latency) in enumerate(rows):
        finished = now - dt.timedelta(hours=hours)
        values.append(
            {
                "workspace_id": workspace_id,
                "response_id": f"seed-{workspace_id}-{n}",
                "status": status,
                "attempts": 1,
                "created_at": finished - dt.timedelta(seconds=latency),
                "updated_at": finished,
                "sent_at": finished if status == "sent" else None,
            }
        )
    with app.app_context(), state.db.engine.begin() as conn:
        conn.execute(table.insert(), values)
    return now
