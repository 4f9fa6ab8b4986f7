"""The settings page's delivery insight: two charts and the latency figures."""

from __future__ import annotations

import logging
import typing as t

import sqlalchemy as sa
from markupsafe import Markup

from ..core.chart import stacked_bars
from ..outbound import insight

if t.TYPE_CHECKING:
    from ..state import State


logger = logging.getLogger("flask_refiner_segment")


def view(state: State, workspace_id: str) -> dict[str, t.Any] | None:
    """What ``_insight.html`` shows for a workspace; ``None`` (the page still
    renders) when the database refused."""
    try:
        figures = insight.figures(state, workspace_id)
    except sa.exc.SQLAlchemyError:
        logger.warning("Could not read the delivery insight.", exc_info=True)
        return None
    hourly, daily = figures["hourly"], figures["daily"]
    day_totals = insight.totals(hourly)
    month_totals = insight.totals(daily)
    return {
        "latency": figures["latency"],
        "day_totals": day_totals,
        "month_totals": month_totals,
        "all_failing": bool(day_totals["failed"]) and not day_totals["sent"],
        "hourly_svg": Markup(  # noqa: S704 - built from escaped parts
            stacked_bars(
                hourly,
                [b["start"][11:16] for b in hourly],
                title="Deliveries per hour, last 24 hours (UTC)",
                element_id="chart-hourly",
                label_every=3,
                empty_text="No deliveries in the last 24 hours.",
            )
        ),
        "daily_svg": Markup(  # noqa: S704 - built from escaped parts
            stacked_bars(
                daily,
                [b["start"][5:10] for b in daily],
                title="Deliveries per day, last 30 days (UTC)",
                element_id="chart-daily",
                label_every=5,
                empty_text="No deliveries in the last 30 days.",
            )
        ),
    }
