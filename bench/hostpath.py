"""Outbound as a survey app sees it: the host's own request (INSERT of its
response row, COMMIT on ``db.session``) with and without the signal.

:func:`request_cost`: the contenders take turns in blocks of :data:`BLOCK`
requests (in an order that rotates, each block on a quiet system: the
deliveries of the ones before it received), so that the machine's noise falls
on all of them alike; the added cost is each one's median (p99) minus the
host alone's, same run.
:func:`growth`: the request cost and a drain's throughput with N deliveries
already in the outbox (loaded as the ``outbox`` part does, all sent).
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing as t

import sqlalchemy as sa
from flask_refiner_segment.state import EXTENSION_KEY

from . import delivery
from . import outbox
from ._util import StandIn
from ._util import median
from ._util import percentile

#: Requests per contender per turn.
BLOCK = 50
#: Response ids of each contender start here, apart (never a duplicate).
OFFSET = 40_000_000


@dataclasses.dataclass
class CostResult:
    database: str
    name: str
    n: int
    median_ms: float
    p99_ms: float
    #: Over the host alone's median and p99, same run.
    added_median_ms: float = 0.0
    added_p99_ms: float = 0.0


def request_cost(
    database: str,
    producers: t.Sequence[delivery.Producer],
    n: int,
    standin: StandIn,
) -> list[CostResult]:
    """``n`` requests of each producer (the first is the floor, whose
    completions go nowhere), after a warm-up of each, interleaved in blocks
    in an order that rotates each round. Each block starts once the stand-in
    holds every message sent so far: no block pays for the drain of the one
    before it (a worker's, or analytics-python's thread)."""
    standin.reset()
    sent = 0

    def block(k: int, size: int, offset: int) -> list[float]:
        nonlocal sent
        times = producers[k].send(size, offset=OFFSET + k * 1_000_000 + offset)
        if k:
            sent += size
            standin.wait_for(3 * sent, stall=15)
        return times

    for k in range(len(producers)):
        block(k, min(100, n), 500_000)
    times: list[list[float]] = [[] for _ in producers]
    done = 0
    while done < n:
        size = min(BLOCK, n - done)
        first = done // BLOCK
        for j in range(len(producers)):
            k = (first + j) % len(producers)
            times[k] += block(k, size, done)
        done += size
    results = [
        CostResult(database, p.name, n, median(ts) * 1000, percentile(ts, 99) * 1000)
        for p, ts in zip(producers, times, strict=True)
    ]
    floor = results[0]
    for r in results:
        r.added_median_ms = r.median_ms - floor.median_ms
        r.added_p99_ms = r.p99_ms - floor.p99_ms
    return results


@contextlib.contextmanager
def contenders(
    label: str, database_url: str, redis_url: str, api_host: str, queue: int
) -> t.Iterator[list[delivery.Producer]]:
    """The host alone, + analytics-python after the commit, + the extension
    after the commit, + the extension inside the transaction (1 worker)."""
    with contextlib.ExitStack() as stack:
        ext = stack.enter_context(
            delivery.extension(
                f"{label}: ext", database_url, redis_url, api_host, workers=1
            )
        )
        floor = stack.enter_context(delivery.host_alone(database_url))
        theirs = stack.enter_context(
            delivery.analytics_python(api_host, database_url, max_queue_size=queue)
        )
        yield [
            floor,
            theirs.with_commit("after", "+ analytics-python, after the commit"),
            ext.with_commit("after", "+ flask-refiner-segment, after the commit"),
            ext.with_commit(
                "inside", "+ flask-refiner-segment, inside the transaction"
            ),
        ]


@dataclasses.dataclass
class GrowthResult:
    database: str
    rows: int
    load_s: float
    #: The extension's request (inside the transaction), host commit included,
    #: and its cost added over the host alone's, interleaved in the same run.
    request_median_ms: float
    request_p99_ms: float
    added_median_ms: float
    added_p99_ms: float
    #: Completions sent as fast as one thread can, until all are at the stand-in.
    n: int
    completions_per_s: float
    received: int

    @property
    def lost(self) -> int:
        return 3 * self.n - self.received


def growth(
    label: str,
    database_url: str,
    redis_url: str,
    standin: StandIn,
    sizes: t.Sequence[int],
    n: int,
) -> list[GrowthResult]:
    """For each size: fresh tables, ``rows`` sent deliveries loaded, then the
    request cost (``n`` requests, interleaved with the host alone's) and the
    throughput of ``n`` completions."""
    results = []
    for rows in sizes:
        with (
            delivery.extension(
                label, database_url, redis_url, standin.url, workers=1
            ) as ext,
            delivery.host_alone(database_url) as floor,
        ):
            state = ext.app.extensions[EXTENSION_KEY]
            with ext.app.app_context():
                load_s = outbox.load(state.db.engine, rows)
                table = state.tables.outbound.Delivery.__table__
                with state.db.engine.begin() as conn:  # nothing to deliver
                    conn.execute(
                        table.update()
                        .where(table.c.status == "pending")
                        .values(status="sent", sent_at=sa.func.now())
                    )
            producer = ext.with_commit("inside")
            cost = request_cost(label, [floor, producer], n, standin)[1]
            run = delivery.throughput(producer, standin, n)
        results.append(
            GrowthResult(
                label,
                rows,
                load_s,
                cost.median_ms,
                cost.p99_ms,
                cost.added_median_ms,
                cost.added_p99_ms,
                n,
                run.completions_per_s,
                run.received,
            )
        )
    return results
