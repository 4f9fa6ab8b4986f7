"""Inbound: requests per second through gunicorn (2 sync workers) on PostgreSQL.

Single ``track`` messages, as Segment's partner destinations send them one per
request, and batches of 100, each with unique ``messageId``s. Two baselines on
the same server: a bare route (reads the body, answers 200) and a minimal
durable webhook route (INSERTs the raw body as one row and commits: the floor
any durable receiver pays). Load from ``wrk`` when installed (a
Lua script makes every body unique), else from Python threads.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import typing as t
import uuid

import requests
import sqlalchemy as sa

from . import hostapp
from ._util import ROOT
from ._util import free_port
from ._util import stop

INBOUND_PATH = "/integrations/segment/inbound"
AUTH = "Basic " + base64.b64encode(f"{hostapp.INBOUND_KEY}:".encode()).decode()
MESSAGE = (
    '{"type":"track","event":"Order Completed","userId":"user-%s",'
    '"messageId":"%s","timestamp":"2026-11-29T10:00:00.000Z",'
    '"properties":{"total":42.5,"currency":"EUR","items":3},'
    '"context":{"ip":"203.0.113.9","library":{"name":"analytics.js"}}}'
)

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "%(auth)s"
local template = '%(message)s'
local size = %(size)d
local counter = 0
local made = 0
function setup(thread)
  made = made + 1
  thread:set("tid", made)
end
function init(args)
  prefix = "%(run)s-" .. tostring(tid)
end
local function message()
  counter = counter + 1
  local id = prefix .. "-" .. counter
  return string.format(template, tid .. "-" .. (counter %% 5000), id)
end
function request()
  local body
  if size == 1 then
    body = message()
  else
    local parts = {}
    for i = 1, size do parts[i] = message() end
    body = '{"batch":[' .. table.concat(parts, ",") .. ']}'
  end
  return wrk.format(nil, nil, nil, body)
end
"""


@dataclasses.dataclass
class InboundResult:
    name: str
    requests_per_s: float
    messages_per_s: float
    errors: int
    requests: int
    p50_ms: float | None = None
    p99_ms: float | None = None


@contextlib.contextmanager
def gunicorn(database_url: str, redis_url: str, workers: int = 2) -> t.Iterator[str]:
    """The bench host app under gunicorn, on fresh tables."""
    env = {"BENCH_DATABASE_URL": database_url, "BENCH_REDIS_URL": redis_url}
    app = hostapp.create_fresh_app(env)
    with app.app_context():
        app.extensions["bench_db"].engine.dispose()
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "--workers", str(workers)),
            *("--bind", f"127.0.0.1:{port}", "bench.hostapp:create_app()"),
        ],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # Ready when it answers; a loaded machine may take its time to import
        # the app (a read timeout is "not yet", as a refused connection is).
        deadline = time.monotonic() + 120
        while True:
            try:
                requests.post(url + "/bare", timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):
                if proc.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    break
                time.sleep(0.05)
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError("gunicorn did not start:\n" + log.read().decode())
        yield url
    finally:
        stop(proc)
        log.close()


def stored_events(database_url: str) -> int:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = sa.text("SELECT count(*) FROM refiner_segment_event")
            return int(conn.execute(query).scalar_one())
    finally:
        engine.dispose()


def load(
    url: str, path: str, size: int, seconds: float, connections: int, tool: str
) -> InboundResult:
    if tool == "wrk":
        return _wrk(url, path, size, seconds, connections)
    return _python(url, path, size, seconds, connections)


def _wrk(
    url: str, path: str, size: int, seconds: float, connections: int
) -> InboundResult:
    script = WRK_SCRIPT % {
        "auth": AUTH,
        "message": MESSAGE,
        "size": size,
        "run": uuid.uuid4().hex[:12],
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            [
                *("wrk", "--threads", "2", "--connections", str(connections)),
                *("--duration", f"{seconds:g}s", "--latency", "--script", f.name),
                url + path,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    failed = int(errors.group(1)) if errors else 0
    if socket_errors:
        failed += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    p50 = _wrk_ms(re.search(r"50%\s+([\d.]+)(\w+)", out))
    p99 = _wrk_ms(re.search(r"99%\s+([\d.]+)(\w+)", out))
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return InboundResult("", rps, rps * size, failed, total, p50, p99)


def _wrk_ms(match: re.Match[str] | None) -> float | None:
    if match is None:
        return None
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def _python(
    url: str, path: str, size: int, seconds: float, connections: int
) -> InboundResult:
    stop_at = time.perf_counter() + seconds
    prefix = uuid.uuid4().hex[:8]
    counter = iter(range(10**12))
    lock = threading.Lock()

    def body() -> bytes:
        with lock:
            ids = [next(counter) for _ in range(size)]
        messages = [MESSAGE % (i % 5000, f"{prefix}-{i}") for i in ids]
        if size == 1:
            return messages[0].encode()
        return ('{"batch":[' + ",".join(messages) + "]}").encode()

    def worker() -> tuple[int, int]:
        done = failed = 0
        headers = {"Authorization": AUTH, "Content-Type": "application/json"}
        with requests.Session() as http:
            while time.perf_counter() < stop_at:
                answer = http.post(url + path, data=body(), headers=headers, timeout=30)
                done += 1
                failed += answer.status_code >= 300
        return done, failed

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        results = list(pool.map(lambda _: worker(), range(connections)))
    elapsed = time.perf_counter() - started
    done = sum(r[0] for r in results)
    rps = done / elapsed
    failed = sum(r[1] for r in results)
    return InboundResult("", rps, rps * size, failed, done)


def run(
    database_url: str,
    redis_url: str,
    seconds: float,
    connections: int = 8,
    tool: str = "auto",
) -> tuple[list[InboundResult], int, int]:
    """The four loads against one server; also the messages accepted by the
    inbound route (warm-ups included) and the events stored."""
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    results = []
    accepted = 0
    with gunicorn(database_url, redis_url) as url:
        loads = [
            ("bare route (baseline)", "/bare", 1),
            ("durable webhook route (baseline)", "/durable", 1),
            ("inbound, 1 message/request", INBOUND_PATH, 1),
            ("inbound, 100 messages/request", INBOUND_PATH, 100),
        ]
        for name, path, size in loads:
            warm_up = load(url, path, size, min(1.0, seconds), connections, tool)
            result = load(url, path, size, seconds, connections, tool)
            result.name = f"{name} [{tool}]"
            results.append(result)
            if path == INBOUND_PATH:
                for r in (warm_up, result):
                    accepted += (r.requests - r.errors) * size
    return results, accepted, stored_events(database_url)
