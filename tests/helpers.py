"""Helpers shared by test modules (no tests here, so pytest does not collect it)."""

from __future__ import annotations

import collections
import typing as t

import sqlalchemy as sa


def deliveries(app: t.Any) -> list[t.Any]:
    """Every delivery row of ``app``, by id."""
    state = app.extensions["refiner_segment"]
    with app.app_context():
        return list(
            state.db.session.execute(
                sa.select(state.tables.outbound.Delivery).order_by(
                    state.tables.outbound.Delivery.id
                )
            ).scalars()
        )


def statuses(app: t.Any) -> collections.Counter[str]:
    """How many deliveries of ``app`` have each status."""
    return collections.Counter(r.status for r in deliveries(app))
