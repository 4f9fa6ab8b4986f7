"""Shared pieces: services in processes of their own, the payload, statistics."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import requests
import sqlalchemy as sa
from flask_refiner_segment.testing.embedded_redis import EmbeddedRedis
from flask_refiner_segment.testing.embedded_redis import free_port

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SERVER = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@contextlib.contextmanager
def redis_url() -> t.Iterator[str]:
    """``$BENCH_REDIS_URL`` when set, else a private redis-server."""
    if os.environ.get("BENCH_REDIS_URL"):
        yield os.environ["BENCH_REDIS_URL"]
        return
    with EmbeddedRedis() as url:
        yield url


@contextlib.contextmanager
def postgres_database() -> t.Iterator[str]:
    """A database of the benchmark's own on ``$BENCH_POSTGRES_URL``'s server."""
    base = sa.make_url(POSTGRES_SERVER)
    name = f"refiner_bench_{os.getpid()}_{int(time.time())}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def sqlite_database(*, wal: bool = False) -> t.Iterator[str]:
    """A SQLite file; ``wal``: in WAL mode (a property of the file, kept)."""
    with tempfile.TemporaryDirectory(prefix="refiner-bench-") as tmp:
        path = f"{tmp}/bench.db"
        if wal:
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
        yield f"sqlite:///{path}"


class StandIn:
    """The Segment stand-in in a separate process, driven over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()

    def stats(self) -> dict[str, int]:
        return t.cast(dict, self.http.get(self.url + "/stats", timeout=10).json())

    def messages(self) -> list[dict[str, t.Any]]:
        data = self.http.get(self.url + "/messages", timeout=60).json()
        return t.cast(list, data["messages"])

    def reset(self) -> None:
        self.http.post(self.url + "/reset", timeout=10).raise_for_status()

    def wait_for(
        self, count: int, *, stall: float = 10.0, poll: float = 0.005
    ) -> tuple[float, dict[str, int]]:
        """Wait until ``count`` messages were accepted, or nothing arrives for
        ``stall`` seconds; returns the time of the last count seen and the stats."""
        last_change = time.perf_counter()
        seen = -1
        while True:
            stats = self.stats()
            now = time.perf_counter()
            total = stats["accepted"] + stats["rejected"] + stats["duplicates"]
            if total != seen:
                seen, last_change = total, now
            if stats["accepted"] >= count:
                return now, stats
            if now - last_change > stall:
                return last_change, stats
            time.sleep(poll)


@contextlib.contextmanager
def standin_process() -> t.Iterator[StandIn]:
    """``python -m flask_refiner_segment.testing.standin`` on a free port."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask_refiner_segment.testing.standin",
            "--quiet",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
    )
    standin = StandIn(f"http://127.0.0.1:{port}")
    try:
        for _ in range(400):
            try:
                standin.stats()
                break
            except requests.ConnectionError:
                time.sleep(0.025)
        else:
            raise RuntimeError("the stand-in did not start")
        yield standin
    finally:
        proc.terminate()
        proc.wait()


def flask_process(
    args: list[str], env: dict[str, str], log: t.IO[bytes]
) -> subprocess.Popen[bytes]:
    """``flask --app bench.hostapp <args>`` in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "bench.hostapp", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def completion_kwargs(n: int, user_id: str | None = None) -> dict[str, t.Any]:
    """One realistic ``survey_completed`` payload (5 answers, an account)."""
    return {
        "user_id": user_id or f"u-{n % 1000}",
        "survey": {
            "id": "nps-2026",
            "name": "NPS Survey",
            "questions": [
                {"key": "how_likely", "type": "nps"},
                {"key": "team_size", "scope": "account"},
            ],
        },
        "response": {
            "id": f"r-{n}",
            "completed_at": dt.datetime.now(dt.timezone.utc),
            "answers": {
                "how_likely": n % 11,
                "role": "Engineer",
                "tools": ["Segment", "Jira"],
                "team_size": "11-50",
                "why": "Because it works well for our team.",
            },
        },
        "account": {"id": f"acct-{n % 100}", "traits": {"name": "Acme", "plan": "pro"}},
        "user_traits": {"email": f"user{n % 1000}@example.com", "name": "Ann"},
    }


def percentile(values: t.Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: t.Sequence[float]) -> float:
    return statistics.median(values)


def parse_iso(value: str) -> float:
    """A ``...Z`` timestamp as seconds since the epoch."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
