"""Retention of the outbox: finished deliveries are deleted after a while.

A delivery is *finished* once it is ``sent``, ``failed`` or ``skipped``; its age
is the time of its last change (``updated_at``: when it was sent, failed for
good or skipped; ``retry-failed`` makes a failed one young again). Pending and
sending deliveries are never pruned, whatever their age. User segments read
``refiner_segment_response``, not deliveries, so pruning changes no membership.

Deletes go in bounded batches: per transaction, the ids of at most
``batch_size`` old rows (through the ``(status, updated_at)`` index), then one
``DELETE`` of those by primary key, so a prune never holds many row locks or a
long transaction and each batch costs the same however many rows are old. The
periodic sweep prunes at most :data:`SWEEP_BATCHES` batches per run.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import typing as t

import sqlalchemy as sa

from ..tables import outbound as models
from ..tables.base import utcnow

if t.TYPE_CHECKING:
    from ..state import State

#: The statuses a delivery never leaves by itself.
FINISHED = (models.SENT, models.FAILED, models.SKIPPED)
#: Rows per ``DELETE`` (and per transaction).
BATCH_SIZE = 1000
#: Batches the periodic sweep deletes at most per run (10,000 rows a minute
#: with the default sweep interval).
SWEEP_BATCHES = 10


@dataclasses.dataclass
class Pruned:
    """What one prune removed."""

    #: Deleted deliveries per status (finished statuses only).
    by_status: dict[str, int]
    #: How many ``DELETE`` statements (transactions) it took.
    batches: int
    #: Whether it stopped at its budget with old rows left.
    more: bool

    @property
    def total(self) -> int:
        return sum(self.by_status.values())


def cutoff(days: int, now: dt.datetime | None = None) -> dt.datetime:
    """The time before which finished deliveries are old enough to prune."""
    if days < 0:
        raise ValueError("retention days must be >= 0")
    try:
        return (now or utcnow()) - dt.timedelta(days=days)
    except OverflowError:  # older than year 1: nothing is that old
        return dt.datetime.min


def prune(
    state: State,
    days: int | None = None,
    *,
    workspace_id: str | None = None,
    batch_size: int = BATCH_SIZE,
    max_batches: int | None = None,
) -> Pruned:
    """Delete finished deliveries whose last change is older than ``days``.

    ``days`` defaults to ``DELIVERY_RETENTION_DAYS`` (``None`` there: nothing
    is pruned unless ``days`` is given). ``workspace_id``: only that workspace
    (default: all). At most ``batch_size`` rows per ``DELETE``, each in its own
    short transaction; at most ``max_batches`` of them (default: until done).
    """
    if days is None:
        days = state.config.delivery_retention_days
        if days is None:
            return Pruned({}, 0, False)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    table = t.cast(sa.Table, state.tables.outbound.Delivery.__table__)
    old = [table.c.status.in_(FINISHED), table.c.updated_at < cutoff(days)]
    if workspace_id is not None:
        old.append(table.c.workspace_id == workspace_id)
    chunk = sa.select(table.c.id).where(*old).limit(batch_size)
    removed: collections.Counter[str] = collections.Counter()
    batches = 0
    while max_batches is None or batches < max_batches:
        with state.db.engine.begin() as conn:
            ids = list(conn.execute(chunk).scalars())
            # Deleted by primary key (a plan that stays cheap however many rows
            # are old), with the conditions again: PostgreSQL re-checks them on
            # a row changed meanwhile (a failed delivery retried is pending).
            statuses = (
                list(
                    conn.execute(
                        table.delete()
                        .where(table.c.id.in_(ids), *old)
                        .returning(table.c.status)
                    ).scalars()
                )
                if ids
                else []
            )
        batches += 1
        removed.update(statuses)
        if len(ids) < batch_size:
            return Pruned(dict(removed), batches, False)
    return Pruned(dict(removed), batches, True)


def prune_some(state: State) -> Pruned:
    """The periodic sweep's share: at most :data:`SWEEP_BATCHES` batches."""
    return prune(state, max_batches=SWEEP_BATCHES)
