"""Helpers shared by test modules (no tests here, so pytest does not collect it)."""

from __future__ import annotations

import collections
import os
import typing as t

import pytest
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


def end_backoffs(app: t.Any, at: t.Any = None) -> None:
    """Every pending delivery of ``app`` is due at ``at`` (default: now), as
    when its workspace's backoff ends then."""
    from flask_refiner_segment.tables.base import utcnow

    state = app.extensions["refiner_segment"]
    table = state.tables.outbound.Delivery.__table__
    with app.app_context(), state.db.engine.begin() as conn:
        conn.execute(
            table.update()
            .where(table.c.status == "pending")
            .values(next_attempt_at=utcnow() if at is None else at)
        )


def statuses(app: t.Any) -> collections.Counter[str]:
    """How many deliveries of ``app`` have each status."""
    return collections.Counter(r.status for r in deliveries(app))


#: ``REFINER_TEST_FUZZ_SCALE=10`` gives every property-based test ten times its
#: examples: a deeper search than the default run's, for a quiet moment.
FUZZ_SCALE = float(os.environ.get("REFINER_TEST_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    """Hypothesis's ``max_examples`` for a test that asks for ``n``."""
    return max(1, round(n * FUZZ_SCALE))


#: Runs a test on PostgreSQL alone: the ``database_url`` fixture's other case,
#: SQLite, does not apply to it (and is not collected as a skip).
postgres_only = pytest.mark.parametrize(
    "database_url",
    [pytest.param("postgresql", marks=pytest.mark.postgres)],
    indirect=True,
)
