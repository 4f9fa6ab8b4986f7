"""The report of ``python -m bench``: Markdown tables printed as results come
in, kept for ``--json``."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import typing as t

import redis
import sqlalchemy as sa

from . import delivery
from . import hostpath
from . import inbound
from . import segments


class Report:
    """Prints Markdown tables as results come in; keeps them for ``--json``."""

    def __init__(self, json_path: str | None) -> None:
        self.json_path = json_path
        self.data: dict[str, t.Any] = {}

    def line(self, text: str = "") -> None:
        print(text, flush=True)

    def table(
        self,
        title: str,
        header: list[str],
        rows: list[list[str]],
        right: t.Collection[int] = (),
    ) -> None:
        """``right``: the indexes of the columns aligned right (numbers)."""
        self.line(f"\n### {title}\n")
        self.line("| " + " | ".join(header) + " |")
        self.line(
            "|" + "".join("---:|" if i in right else "---|" for i in range(len(header)))
        )
        for row in rows:
            self.line("| " + " | ".join(row) + " |")

    def machine(self, postgres: str, redis_at: str) -> None:
        engine = sa.create_engine(postgres)
        with engine.connect() as conn:
            pg = conn.execute(sa.text("SHOW server_version")).scalar()
        engine.dispose()
        info = redis.Redis.from_url(redis_at).info("server")
        cpu = _cpu_model()
        text = (
            f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"PostgreSQL {pg}, Redis {info['redis_version']}, {platform.system()}"
        )
        self.data["machine"] = text
        self.line(f"Machine: {text}")

    def host_request(self, results: list[hostpath.CostResult]) -> None:
        self.data["request_path"] = [dataclasses.asdict(r) for r in results]
        rows = []
        for r in results:
            theirs = next(
                b
                for b in results
                if b.database == r.database and "analytics-python" in b.name
            )
            # analytics-python's added cost can be within the noise, even < 0.
            added = r is not theirs and r.added_median_ms and theirs.added_median_ms > 0
            rows.append(
                [
                    r.database,
                    r.name,
                    f"{r.median_ms:.3f} ms",
                    f"{r.p99_ms:.3f} ms",
                    f"{r.added_median_ms:+.3f} ms" if r.added_median_ms else "–",
                    f"{r.added_p99_ms:+.3f} ms" if r.added_median_ms else "–",
                    f"{r.added_median_ms / theirs.added_median_ms:.2f}"
                    if added
                    else ("1.00" if r is theirs else "–"),
                ]
            )
        self.table(
            f"1. Request cost as the host sees it, {results[0].n:,} requests each"
            " (its response row INSERTed and COMMITted on db.session; contenders"
            f" interleaved in blocks of {hostpath.BLOCK})",
            [
                "database",
                "",
                "median",
                "p99",
                "added median",
                "added p99",
                "added ÷ analytics-python's",
            ],
            rows,
            right=range(2, 7),
        )

    def throughput(
        self, results: list[delivery.ThroughputResult], capacity: float
    ) -> None:
        self.data["throughput"] = [_tp(r) for r in results]
        self.data["standin_capacity"] = capacity
        n = results[0].n

        def base(r: delivery.ThroughputResult) -> delivery.ThroughputResult:
            return next(
                b
                for b in results
                if "max_queue_size" in b.name
                and b.threads == r.threads
                and b.database == r.database
            )

        self.table(
            f"2. End-to-end throughput with the host's commit, N = {n:,} completions"
            f" ({3 * n:,} messages), one producer process",
            [
                "",
                "producer threads",
                "completions/s",
                "÷ analytics-python (no drops)",
                "requests done",
                "all received",
                "received",
                "lost",
                "requests",
            ],
            [
                [
                    r.name,
                    str(r.threads),
                    f"{r.completions_per_s:,.0f}" if not r.lost else "–",
                    _div(r, base(r)) if not r.lost else "–",
                    f"{r.produce_s:.2f} s",
                    f"{r.total_s:.2f} s" if not r.lost else "never",
                    f"{r.received:,}",
                    f"{r.lost:,}",
                    f"{r.requests:,}",
                ]
                for r in results
            ],
        )
        fastest = max(r.received / r.total_s for r in results)
        self.line(
            f"\nStand-in ceiling: {capacity:,.0f} messages/s accepted "
            f"({capacity / fastest:.1f}× the fastest rate above, "
            f"{fastest:,.0f} messages/s)."
        )

    def latency(self, results: list[delivery.LatencyResult]) -> None:
        self.data["latency"] = [dataclasses.asdict(r) for r in results]
        self.table(
            f"3. Latency, completion (host commit included) → all three messages"
            f" received, a steady {results[0].rate:,.0f} completions/s",
            ["", "samples", "p50", "p99", "max"],
            [
                [
                    r.name,
                    str(r.samples),
                    f"{r.p50_ms:.0f} ms",
                    f"{r.p99_ms:.0f} ms",
                    f"{r.max_ms:.0f} ms",
                ]
                for r in results
            ],
            right=range(1, 5),
        )

    def inbound(
        self, results: list[inbound.InboundResult], accepted: int, stored: int
    ) -> None:
        self.data["inbound"] = [dataclasses.asdict(r) for r in results]
        base, durable = results[0], results[1]
        self.table(
            "4. Inbound through gunicorn (2 sync workers), PostgreSQL",
            [
                *("", "requests/s", "messages/s", "÷ bare route"),
                *("÷ durable route", "p50", "p99", "errors"),
            ],
            [
                [
                    r.name,
                    f"{r.requests_per_s:,.0f}",
                    f"{r.messages_per_s:,.0f}" if "inbound" in r.name else "–",
                    f"{r.requests_per_s / base.requests_per_s:.2f}",
                    f"{r.requests_per_s / durable.requests_per_s:.2f}",
                    f"{r.p50_ms:.1f} ms" if r.p50_ms is not None else "–",
                    f"{r.p99_ms:.1f} ms" if r.p99_ms is not None else "–",
                    str(r.errors),
                ]
                for r in results
            ],
        )
        self.data["inbound_accepted"] = accepted
        self.data["inbound_events_stored"] = stored
        self.line(
            f"\nInbound messages answered 200 (warm-ups included): {accepted:,};"
            f" events stored: {stored:,}."
        )

    def growth(self, results: list[hostpath.GrowthResult]) -> None:
        self.data["growth"] = [
            {**dataclasses.asdict(r), "lost": r.lost} for r in results
        ]
        base = {r.database: r for r in results if r.rows == results[0].rows}

        def ratio(r: hostpath.GrowthResult, attr: str) -> str:
            return f"{getattr(r, attr) / getattr(base[r.database], attr):.2f}"

        self.table(
            f"5. Growth with the outbox: N sent deliveries already stored; the"
            f" request (inside the transaction, host commit included) and"
            f" {results[0].n:,} completions drained, 1 worker",
            [
                "database",
                "rows",
                "request median",
                "p99",
                "added over the host alone: median",
                "÷ smallest",
                "p99",
                "completions/s",
                "÷ smallest",
                "lost",
            ],
            [
                [
                    r.database,
                    f"{r.rows:,}",
                    f"{r.request_median_ms:.3f} ms",
                    f"{r.request_p99_ms:.3f} ms",
                    f"{r.added_median_ms:+.3f} ms",
                    ratio(r, "added_median_ms"),
                    f"{r.added_p99_ms:+.3f} ms",
                    f"{r.completions_per_s:,.0f}",
                    ratio(r, "completions_per_s"),
                    str(r.lost),
                ]
                for r in results
            ],
            right=range(1, 10),
        )

    def user_segments(
        self, loads: list[segments.LoadResult], results: list[segments.SegmentResult]
    ) -> None:
        self.data["segments_load"] = [dataclasses.asdict(r) for r in loads]
        self.data["segments"] = [dataclasses.asdict(r) for r in results]
        first = loads[0]
        self.table(
            f"6. User segments, {first.profiles:,} profiles, {segments.ACCOUNTS:,}"
            f" accounts, {first.events:,} events: count() best of 3, is_member()"
            f" mean over {segments.SAMPLE} users",
            ["database", "segment shape", "members", "count() ms", "is_member() ms"],
            [
                [
                    r.database,
                    r.shape,
                    f"{r.members:,}",
                    f"{r.count_ms:,.1f}",
                    f"{r.is_member_ms:.2f}",
                ]
                for r in results
            ],
            right=(2, 3, 4),
        )
        self.line(
            "\nLoading the data took "
            + ", ".join(f"{r.seconds:.1f} s on {r.database}" for r in loads)
            + "."
        )

    def save(self) -> None:
        if self.json_path:
            with open(self.json_path, "w") as f:
                json.dump(self.data, f, indent=2)


def _div(result: delivery.ThroughputResult, base: delivery.ThroughputResult) -> str:
    return f"{result.completions_per_s / base.completions_per_s:.2f}"


def _tp(result: delivery.ThroughputResult) -> dict[str, t.Any]:
    return {
        **dataclasses.asdict(result),
        "completions_per_s": result.completions_per_s,
        "lost": result.lost,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()
