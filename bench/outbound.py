"""The outbound parts of ``python -m bench``: path, throughput, latency, growth.

Every contender runs the host's request: the INSERT of its response row and
the COMMIT on ``db.session`` (bench/hostapp.py), on PostgreSQL and on SQLite in
WAL mode. The extension runs with one worker process; analytics-python in the
same process as the host, with a queue big enough for every message (its
default drops a burst's excess, shown once in table 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import typing as t

from . import delivery
from . import hostpath
from ._util import StandIn

EXT = "flask-refiner-segment"


@dataclasses.dataclass
class Setup:
    """What the outbound parts run against."""

    databases: list[tuple[str, str]]  # (label, url): PostgreSQL, SQLite (WAL)
    redis_url: str
    standin: StandIn


@dataclasses.dataclass
class Outcome:
    """The results kept for ``--json`` and the final check."""

    paths: list[hostpath.CostResult] = dataclasses.field(default_factory=list)
    runs: list[delivery.ThroughputResult] = dataclasses.field(default_factory=list)
    latencies: list[delivery.LatencyResult] = dataclasses.field(default_factory=list)
    growth: list[hostpath.GrowthResult] = dataclasses.field(default_factory=list)

    def lost(self) -> list[t.Any]:
        """Extension runs that lost a message."""
        runs = [r for r in self.runs if r.name.startswith(EXT) and r.lost]
        return runs + [r for r in self.growth if r.lost]


def run(parts: set[str], args: t.Any, setup: Setup, report: t.Any) -> Outcome:
    """Run the outbound ``parts`` and print their tables."""
    out = Outcome()
    host, redis_url = setup.standin.url, setup.redis_url

    def ext(label: str, url: str, commit: delivery.Commit) -> t.Any:
        where = "inside the transaction" if commit == "inside" else "after the commit"
        name = f"{EXT}, {where} ({label}, 1 worker)"
        setup = delivery.extension(name, url, redis_url, host, 1)
        return _as(setup, lambda _: name, label, commit)

    def theirs(url: str, label: str, room: int | None) -> t.Any:
        options = {} if room is None else {"max_queue_size": room}
        setup = delivery.analytics_python(host, url, **options)
        return _as(setup, lambda name: f"{name} ({label})", label)

    if "path" in parts:
        queue = 3 * (args.path_n + 100) * 4 + 1000
        for label, url in setup.databases:
            with hostpath.contenders(label, url, redis_url, host, queue) as producers:
                out.paths += hostpath.request_cost(
                    label, producers, args.path_n, setup.standin
                )
        report.host_request(out.paths)

    if "throughput" in parts:
        capacity = delivery.standin_capacity(setup.standin, max(3 * args.n, 10_000))
        room = 3 * args.n + 1000
        for label, url in setup.databases:
            for threads in (1, args.threads):
                contenders = [
                    ext(label, url, "inside"),
                    ext(label, url, "after"),
                    theirs(url, label, room),
                ]
                if threads == 1 and label == setup.databases[0][0]:
                    contenders.append(theirs(url, label, None))
                for contender in contenders:
                    with contender as producer:
                        out.runs.append(
                            delivery.throughput(
                                producer, setup.standin, args.n, threads
                            )
                        )
        report.throughput(out.runs, capacity)

    if "latency" in parts:
        for label, url in setup.databases:
            for contender in (ext(label, url, "inside"), theirs(url, label, None)):
                with contender as producer:
                    out.latencies.append(
                        delivery.latency(
                            producer,
                            setup.standin,
                            args.latency_samples,
                            args.latency_rate,
                        )
                    )
        report.latency(out.latencies)

    if "growth" in parts:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        for label, url in setup.databases:
            out.growth += hostpath.growth(
                label, url, redis_url, setup.standin, sizes, args.growth_n
            )
        report.growth(out.growth)
    return out


@contextlib.contextmanager
def _as(
    setup: t.ContextManager[delivery.Producer],
    rename: t.Callable[[str], str],
    database: str,
    commit: delivery.Commit = None,
) -> t.Iterator[delivery.Producer]:
    """``setup``'s producer renamed, on ``database`` (and committing as
    ``commit``, if given)."""
    with setup as producer:
        yield producer.with_commit(
            commit or producer.commit, rename(producer.name), database
        )
