"""Run the benchmarks and print the tables: ``python -m bench [--smoke]``.

Needs PostgreSQL (``$BENCH_POSTGRES_URL``, default the local ``test`` database's
server; a database of the run's own is created and dropped) and starts its own
Redis (or uses ``$BENCH_REDIS_URL``), stand-in, RQ workers and gunicorn.
Parts (``--only``): path, throughput, latency, growth (outbound as a survey
app sees it, its own commit included: bench/outbound.py), inbound
(bench/inbound.py), segments (segment
evaluation on generated data, PostgreSQL and SQLite: bench/segments.py),
outbox (claim, mark_sent and prune with the outbox's size: bench/outbox.py)
and tenants (completions spread over many workspaces: bench/tenants.py).
``--smoke`` runs every part with tiny sizes, to keep the harness working; its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
import typing as t

from . import inbound
from . import outbound
from . import outbox
from . import segments
from . import tenants
from ._util import postgres_database
from ._util import redis_url
from ._util import sqlite_database
from ._util import standin_process
from .report import Report

PARTS = (
    "path",
    "throughput",
    "latency",
    "inbound",
    "growth",
    "segments",
    "outbox",
    "tenants",
)


def main(argv: t.Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: the workers, servers
    # and databases the run started are stopped and dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.smoke:
        args.n, args.path_n, args.latency_samples = 300, 200, 5
        args.inbound_seconds, args.sizes, args.threads = 1.0, "1000,3000", 4
        args.growth_n = 100
        args.loadgen = "python"
        args.profiles, args.events = 300, 3_000
        args.outbox_sizes = "1000,3000"
        args.tenants_n, args.tenants_sizes = 200, "1,10,30"
        args.tenants_rate, args.tenants_seconds = 50.0, 1.0
    only = set(args.only.split(","))
    if only - set(PARTS):
        raise SystemExit(f"unknown part: {', '.join(sorted(only - set(PARTS)))}")
    report = Report(args.json)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        redis_at = stack.enter_context(redis_url())
        postgres = stack.enter_context(postgres_database())
        sqlite = stack.enter_context(sqlite_database())
        sqlite_wal = stack.enter_context(sqlite_database(wal=True))
        standin = stack.enter_context(standin_process())
        report.machine(postgres, redis_at)

        databases = [("PostgreSQL", postgres), ("SQLite (WAL)", sqlite_wal)]
        setup = outbound.Setup(databases, redis_at, standin)
        outcome = outbound.run(only, args, setup, report)

        if "inbound" in only:
            loads, accepted, stored = inbound.run(
                postgres, redis_at, args.inbound_seconds, tool=args.loadgen
            )
            report.inbound(loads, accepted, stored)

        if "segments" in only:
            loads, shapes = [], []
            for label, database in (("PostgreSQL", postgres), ("SQLite", sqlite)):
                loaded, timed = segments.run(
                    label, database, redis_at, args.profiles, args.events
                )
                loads.append(loaded)
                shapes += timed
            report.user_segments(loads, shapes)

        if "outbox" in only:
            outbox_sizes = [int(s) for s in args.outbox_sizes.split(",") if s]
            outbox.report(
                report,
                outbox.run("PostgreSQL", postgres, redis_at, outbox_sizes)
                + outbox.run("SQLite", sqlite, redis_at, outbox_sizes),
            )
        tenancy = []
        if "tenants" in only:
            tenancy = tenants.run(
                postgres,
                redis_at,
                standin,
                n=args.tenants_n,
                sizes=[int(s) for s in args.tenants_sizes.split(",") if s],
                rate=args.tenants_rate,
                seconds=args.tenants_seconds,
            )
            tenants.report(report, tenancy)
    report.line(f"\nTotal benchmark time: {time.perf_counter() - started:.0f} s")
    report.save()
    lost = outcome.lost()
    lost += [r for r in tenancy if r.lost or r.late or r.duplicates]
    if lost:
        print(f"ERROR: the extension lost messages: {lost}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser("python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    parser.add_argument("--n", type=int, default=10_000, help="throughput runs")
    parser.add_argument("--path-n", type=int, default=2_000, help="request path")
    parser.add_argument(
        "--threads", type=int, default=8, help="producer threads, second table part"
    )
    parser.add_argument("--latency-samples", type=int, default=2_000)
    parser.add_argument(
        "--latency-rate", type=float, default=200.0, help="latency: completions/s"
    )
    parser.add_argument("--inbound-seconds", type=float, default=10.0)
    parser.add_argument(
        "--sizes",
        default="1000,100000,1000000",
        help="growth: deliveries already in the outbox",
    )
    parser.add_argument(
        "--growth-n", type=int, default=2_000, help="growth: requests, completions"
    )
    parser.add_argument(
        "--profiles", type=int, default=100_000, help="segments: generated profiles"
    )
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="segments: generated events"
    )
    parser.add_argument(
        "--outbox-sizes",
        default="1000,100000,1000000",
        help="outbox: deliveries already in the outbox",
    )
    parser.add_argument("--tenants-n", type=int, default=2_000, help="tenants")
    parser.add_argument(
        "--tenants-sizes", default="1,100,1000", help="tenants: workspaces"
    )
    parser.add_argument(
        "--tenants-rate", type=float, default=200.0, help="tenants: paced/s"
    )
    parser.add_argument(
        "--tenants-seconds", type=float, default=10.0, help="tenants: paced run"
    )
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default all: {','.join(PARTS)})",
    )
    parser.add_argument("--json", help="also write the results to this file")
    return parser


if __name__ == "__main__":
    sys.exit(main())
