"""``python -m bench --smoke`` keeps working; its figures are not judged here.

What is asserted is what must hold at any speed: every part ran, the extension
lost nothing, the stand-in received every message of the baseline run that
has room for them, the inbound runs stored events without errors, and every
segment shape was counted on both databases with the same answers (the data is
generated from the same seed on each); the outbox part claimed full batches
at every size on both databases and pruned every old sent row; the tenants
part delivered every completion once, however many workspaces they came from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench.segments import SHAPES

from .conftest import POSTGRES_URL
from .conftest import ROOT

pytestmark = pytest.mark.postgres


def test_bench_smoke(tmp_path: Path, postgres_url: str | None) -> None:
    if postgres_url is None:
        pytest.skip("the benchmarks need PostgreSQL")
    out = tmp_path / "bench.json"
    env = {**os.environ, "BENCH_POSTGRES_URL": POSTGRES_URL}
    env.pop("BENCH_REDIS_URL", None)
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(out.read_text())

    paths = data["request_path"]
    assert [r["database"] for r in paths] == ["PostgreSQL"] * 4 + ["SQLite (WAL)"] * 4
    assert [r["name"] for r in paths[:4]] == [
        "host alone (INSERT + COMMIT)",
        "+ analytics-python, after the commit",
        "+ flask-refiner-segment, after the commit",
        "+ flask-refiner-segment, inside the transaction",
    ]
    assert all(r["n"] == 200 and r["median_ms"] > 0 for r in paths)
    for result in data["throughput"]:
        assert result["duplicates"] == 0, result
        assert result["rejected"] == 0, result
        assert result["database"] in ("PostgreSQL", "SQLite (WAL)"), result
        if result["name"].startswith("flask-refiner-segment"):
            assert result["lost"] == 0, result
            assert result["received"] == 3 * result["n"], result
        if "max_queue_size" in result["name"]:  # room for every message
            assert result["lost"] == 0, result
    assert len(data["throughput"]) == 2 * 2 * 3 + 1
    assert [r["samples"] for r in data["latency"]] == [5, 5, 5, 5]
    growth = data["growth"]
    assert [(r["database"], r["rows"]) for r in growth] == [
        ("PostgreSQL", 1000),
        ("PostgreSQL", 3000),
        ("SQLite (WAL)", 1000),
        ("SQLite (WAL)", 3000),
    ]
    assert all(r["lost"] == 0 and r["received"] == 300 for r in growth), growth
    loads = data["inbound"]
    assert [r["errors"] for r in loads] == [0, 0, 0, 0]
    assert all(r["requests_per_s"] > 0 for r in loads)
    assert data["inbound_accepted"] > 0
    assert data["inbound_events_stored"] == data["inbound_accepted"]
    assert data["standin_capacity"] > 0
    assert "| database | rows | request median |" in run.stdout  # growth

    segment_loads = data["segments_load"]
    assert [r["database"] for r in segment_loads] == ["PostgreSQL", "SQLite"]
    assert all(r["profiles"] == 300 and r["events"] == 3000 for r in segment_loads)
    assert len(data["segments"]) == 2 * len(SHAPES)
    by_db: dict[str, dict[str, dict]] = {}
    for result in data["segments"]:
        by_db.setdefault(result["database"], {})[result["shape"]] = result
    assert set(by_db) == {"PostgreSQL", "SQLite"}
    for database, shapes in by_db.items():
        assert set(shapes) == set(SHAPES), database
        for shape, result in shapes.items():
            assert 0 <= result["members"] <= 300, (database, shape)
            assert 0 <= result["sampled_members"] <= result["sampled"] == 200
    for shape in SHAPES:
        pg, lite = by_db["PostgreSQL"][shape], by_db["SQLite"][shape]
        assert pg["members"] == lite["members"], shape
        assert pg["sampled_members"] == lite["sampled_members"], shape
    assert by_db["SQLite"]["trait eq (plan = pro)"]["members"] > 0
    assert "| database | segment shape |" in run.stdout

    outbox = data["outbox"]
    assert [(r["database"], r["rows"]) for r in outbox] == [
        ("PostgreSQL", 1000),
        ("PostgreSQL", 3000),
        ("SQLite", 1000),
        ("SQLite", 3000),
    ]
    for result in outbox:
        assert set(result["claimed"]) == {500}, result
        assert result["pruned"] == result["rows"] - 500, result
        assert result["claim_ms"] > 0 and result["prune_rows_per_s"] > 0, result
    assert "LockRows" in outbox[1]["plan"]  # the claim's plan, on PostgreSQL
    assert "| database | rows | claim ms |" in run.stdout

    tenants = data["tenants"]
    assert [(r["workers"], r["workspaces"]) for r in tenants] == [
        (1, 1),
        (1, 10),
        (1, 30),
        (2, 1),
        (2, 10),
        (2, 30),
    ]
    for result in tenants:
        assert result["received"] == 3 * result["n"], result
        assert result["duplicates"] == 0 and result["late"] == 0, result
    assert "| workers | workspaces | completions/s |" in run.stdout
