"""``flask refiner-segment prune-events``: retention of inbound events and views."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from .queries import prune


@click.command("prune-events")
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=0),
    default=None,
    metavar="DAYS",
    help="Age in days (default: REFINER_SEGMENT_EVENT_RETENTION_DAYS).",
)
@with_appcontext
def prune_events(days: int | None) -> None:
    """Delete inbound events and page/screen views older than DAYS."""
    counts = prune(days)
    click.echo(
        f"Deleted {counts['events']} events, {counts['views']} views and"
        f" {counts['message_ids']} seen message ids."
    )


def register(group: click.Group) -> None:
    """Add the inbound commands to the extension's CLI group."""
    group.add_command(prune_events)
