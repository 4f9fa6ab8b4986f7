"""Many tenants: the same completions spread over 1, 100 and 1,000 workspaces.

Each workspace has its own write key (stored, as the settings page stores it)
and sends to the one stand-in. Per number of workers and of workspaces, on
PostgreSQL: the throughput of ``n`` completions sent as fast as one producer
can (round-robin over the workspaces), then the latency completion → stand-in
(all three messages) of completions paced at ``rate`` per second in total.
Ratios are against the single-workspace run with the same workers, in the
same run.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import typing as t

from flask_refiner_segment.outbound import settings
from flask_refiner_segment.state import get_state
from flask_refiner_segment.workspaces import update

from . import delivery
from ._util import StandIn
from ._util import completion_kwargs
from ._util import median
from ._util import parse_iso
from ._util import percentile

#: Give up waiting when nothing arrives this long, or after ``LIMIT`` seconds.
STALL = 20.0
LIMIT = 600.0


@dataclasses.dataclass
class TenantsResult:
    workers: int
    workspaces: int
    n: int
    total_s: float
    #: How long the producer took to record the ``n`` completions.
    recorded_s: float
    received: int
    duplicates: int
    requests: int
    rate: float
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    #: Paced completions whose three messages did not all arrive.
    late: int

    @property
    def completions_per_s(self) -> float:
        return self.n / self.total_s

    @property
    def recorded_per_s(self) -> float:
        """The producer's own rate (what recording costs the host)."""
        return self.n / self.recorded_s

    @property
    def lost(self) -> int:
        return 3 * self.n - self.received


def workspace_ids(count: int) -> list[str]:
    return [f"tenant-{i:04d}" for i in range(count)]


def store_workspaces(producer: delivery.Producer, ids: list[str], host: str) -> None:
    """A write key of its own per workspace, sending to the stand-in."""
    with producer.app.app_context():
        state = get_state()
        for ws in ids:
            values = settings.write_key_values(state, f"bench-key-{ws}")
            update(state, ws, {**values, "region": "custom", "custom_api_host": host})


def _wait(standin: StandIn, count: int) -> tuple[float, dict[str, int]]:
    """Until ``count`` messages arrived, nothing arrived for ``STALL`` seconds
    or ``LIMIT`` passed; the time of the last change and the stats."""
    started = last = time.perf_counter()
    seen = -1
    while True:
        stats = standin.stats()
        now = time.perf_counter()
        total = stats["accepted"] + stats["duplicates"] + stats["rejected"]
        if total != seen:
            seen, last = total, now
        if stats["accepted"] >= count:
            return now, stats
        if now - last > STALL or now - started > LIMIT:
            return last, stats
        time.sleep(0.01)


def _send(producer: delivery.Producer, i: int, ws: str, user_id: str) -> None:
    kwargs = completion_kwargs(i, user_id)
    producer.signal.send(producer.app, workspace_id=ws, **kwargs)


def measure(
    producer: delivery.Producer,
    standin: StandIn,
    workers: int,
    ids: list[str],
    n: int,
    rate: float,
    seconds: float,
) -> TenantsResult:
    """Throughput of ``n`` completions, then latency at ``rate`` per second."""
    standin.reset()
    with producer.app.app_context():
        started = time.perf_counter()
        for i in range(n):
            _send(producer, i, ids[i % len(ids)], f"u-{i % 1000}")
        recorded_s = time.perf_counter() - started
    finished, stats = _wait(standin, 3 * n)
    total_s = finished - started

    standin.reset()
    samples = max(1, int(rate * seconds))
    sent_at: dict[str, float] = {}
    with producer.app.app_context():
        begin = time.perf_counter()
        for i in range(samples):
            pause = begin + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            user_id = f"paced-{i}"
            sent_at[user_id] = time.time()
            _send(producer, 30_000_000 + i, ids[(i * 7919) % len(ids)], user_id)
    _wait(standin, 3 * samples)
    arrived: dict[str, list[float]] = {}
    for message in standin.messages():
        user_id = message.get("userId")
        if user_id in sent_at:
            arrived.setdefault(user_id, []).append(parse_iso(message["receivedAt"]))
    delays = [
        (max(times) - sent_at[u]) * 1000
        for u, times in arrived.items()
        if len(times) == 3
    ]
    late = samples - len(delays)
    delays = delays or [float("nan")]
    return TenantsResult(
        workers,
        len(ids),
        n,
        total_s,
        recorded_s,
        stats["accepted"],
        stats["duplicates"],
        stats["requests"],
        rate,
        samples,
        median(delays),
        percentile(delays, 99),
        max(delays),
        late,
    )


def run(
    postgres: str,
    redis_at: str,
    standin: StandIn,
    *,
    n: int,
    sizes: t.Sequence[int],
    rate: float,
    seconds: float,
    workers: t.Sequence[int] = (1, 2),
) -> list[TenantsResult]:
    results = []
    for count in workers:
        for size in sizes:
            name = f"tenants ({count} worker{'s' * (count > 1)}, {size} workspaces)"
            ids = workspace_ids(size)
            with delivery.extension(
                name, postgres, redis_at, standin.url, count
            ) as producer:
                store_workspaces(producer, ids, standin.url)
                results.append(measure(producer, standin, count, ids, n, rate, seconds))
            print(f"  {name}: {results[-1]}", file=sys.stderr, flush=True)
    return results


def report(rep: t.Any, results: list[TenantsResult]) -> None:
    """Print the table (and keep the results for ``--json``)."""
    rep.data["tenants"] = [
        {
            **dataclasses.asdict(r),
            "completions_per_s": r.completions_per_s,
            "recorded_per_s": r.recorded_per_s,
        }
        for r in results
    ]
    single = {r.workers: r for r in results if r.workspaces == 1}

    def ratio(r: TenantsResult) -> str:
        base = single.get(r.workers)
        if base is None or r.lost or base.lost:
            return "–"
        return f"{r.completions_per_s / base.completions_per_s:.2f}"

    first = results[0]
    rep.table(
        f"8. Many tenants (PostgreSQL): N = {first.n:,} completions spread over"
        f" the workspaces; latency at {first.rate:g} completions/s in total",
        [
            "workers",
            "workspaces",
            "completions/s",
            "÷ 1 workspace",
            "recorded/s",
            "requests",
            "lost",
            "duplicates",
            "latency p50",
            "p99",
            "max",
            "late",
        ],
        [
            [
                str(r.workers),
                f"{r.workspaces:,}",
                f"{r.completions_per_s:,.0f}"
                if not r.lost
                else f"{r.received / 3 / r.total_s:,.0f} (gave up)",
                ratio(r),
                f"{r.recorded_per_s:,.0f}",
                f"{r.requests:,}",
                f"{r.lost:,}",
                f"{r.duplicates:,}",
                f"{r.p50_ms:,.0f} ms",
                f"{r.p99_ms:,.0f} ms",
                f"{r.max_ms:,.0f} ms",
                f"{r.late:,}",
            ]
            for r in results
        ],
        right=range(0, 12),
    )


if __name__ == "__main__":
    from .__main__ import main

    sys.exit(main(["--only", "tenants", *sys.argv[1:]]))
