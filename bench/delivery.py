"""Outbound: request-path cost, end-to-end throughput and latency.

The extension (RQ workers as separate ``flask refiner-segment worker``
processes) and the baseline (``segment-analytics-python`` in the handler) send
to the same stand-in process. One producer: this process.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import os
import tempfile
import time
import typing as t

import redis
from blinker import Namespace
from flask import Flask
from rq import Worker

from . import baseline
from . import hostapp
from ._util import StandIn
from ._util import completion_kwargs
from ._util import flask_process
from ._util import median
from ._util import parse_iso
from ._util import percentile
from ._util import stop

#: When the host's request sends the signal: ``None``, alone (no host
#: transaction: the signal's own cost); ``"after"`` the host's commit of its
#: response row; ``"inside"`` its transaction, before the commit.
Commit = t.Literal["after", "inside"] | None


@dataclasses.dataclass
class Producer:
    """A host app whose ``survey_completed`` goes to the extension or the baseline."""

    name: str
    app: Flask
    signal: t.Any
    close: t.Callable[[], None] = lambda: None
    #: With a value, each completion is a request of its own (an app context)
    #: that INSERTs the host's response row on ``db.session`` and COMMITs.
    commit: Commit = None
    #: The database's label, when the host commits.
    database: str = ""

    def with_commit(
        self, commit: Commit, name: str | None = None, database: str | None = None
    ) -> Producer:
        """This producer, the host committing its response row too."""
        return dataclasses.replace(
            self,
            commit=commit,
            name=name or self.name,
            database=self.database if database is None else database,
        )

    def send_threaded(self, n: int, threads: int) -> list[float]:
        """Send ``n`` completions from ``threads`` threads, like a threaded server."""
        if threads == 1:
            return self.send(n, offset=0)
        share = -(-n // threads)
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            parts = pool.map(
                lambda k: self.send(min(share, n - k * share), offset=k * share),
                range(threads),
            )
            return [t for part in parts for t in part]

    def send(self, n: int, offset: int, user_id: str | None = None) -> list[float]:
        """Send ``n`` completions; the seconds each took (the signal's ``send``,
        or the host's whole request when it commits)."""
        if self.commit is not None:
            return [
                self.request(completion_kwargs(i, user_id))
                for i in range(offset, offset + n)
            ]
        times = []
        send, app = self.signal.send, self.app
        with app.app_context():
            for i in range(offset, offset + n):
                kwargs = completion_kwargs(i, user_id)
                started = time.perf_counter()
                send(app, **kwargs)
                times.append(time.perf_counter() - started)
        return times

    def request(self, kwargs: dict[str, t.Any]) -> float:
        """One request of the host: its response row INSERTed and COMMITted on
        ``db.session``, the signal sent inside or after; the seconds it took."""
        app = self.app
        db, model = app.extensions["bench_db"], app.extensions["bench_response"]
        response = kwargs["response"]
        started = time.perf_counter()
        with app.app_context():
            db.session.add(
                model(
                    response_id=response["id"],
                    user_id=kwargs["user_id"],
                    survey_id=kwargs["survey"]["id"],
                    answers=response["answers"],
                    completed_at=response["completed_at"],
                )
            )
            if self.commit == "inside":
                self.signal.send(app, **kwargs)
            db.session.commit()
            if self.commit == "after":
                self.signal.send(app, **kwargs)
        return time.perf_counter() - started


@contextlib.contextmanager
def host_app(database_url: str) -> t.Iterator[Flask]:
    """The host app without the extension on ``database_url`` (its response
    table created if missing)."""
    os.environ["BENCH_DATABASE_URL"] = database_url
    app = hostapp.create_app(extension=False)
    db = app.extensions["bench_db"]
    with app.app_context():
        db.create_all()
    try:
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()


@contextlib.contextmanager
def host_alone(database_url: str) -> t.Iterator[Producer]:
    """The floor: the host's request (INSERT, COMMIT) and nothing else."""
    with host_app(database_url) as app:
        signal = Namespace().signal("survey")
        yield Producer("host alone (INSERT + COMMIT)", app, signal, commit="after")


@contextlib.contextmanager
def extension(
    name: str, database_url: str, redis_url: str, api_host: str, workers: int
) -> t.Iterator[Producer]:
    """The extension on fresh tables, with ``workers`` RQ worker processes."""
    env = {
        "BENCH_DATABASE_URL": database_url,
        "BENCH_REDIS_URL": redis_url,
        "BENCH_API_HOST": api_host,
    }
    app = hostapp.create_fresh_app(env)
    db = app.extensions["bench_db"]
    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    log = tempfile.TemporaryFile()
    procs = [
        flask_process(["refiner-segment", "worker"], env, log) for _ in range(workers)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(Worker.all(connection=connection)) < workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                log.seek(0)
                raise RuntimeError("workers did not start:\n" + log.read().decode())
            time.sleep(0.05)
        yield Producer(name, app, hostapp.survey_completed)
    finally:
        for proc in procs:
            stop(proc)
        log.close()
        with app.app_context():
            db.engine.dispose()
        connection.close()


@contextlib.contextmanager
def analytics_python(
    api_host: str, database_url: str | None = None, **options: t.Any
) -> t.Iterator[Producer]:
    """``segment-analytics-python`` called from the handler; with
    ``database_url``, after the host's commit of its response row."""
    client = baseline.make_client(api_host, **options)
    signal = Namespace().signal("survey_completed")
    signal.connect(baseline.handler(client), weak=False)
    name = "analytics-python" + (" (" + _options(options) + ")" if options else "")
    with contextlib.ExitStack() as stack:
        stack.callback(client.shutdown)
        if database_url is None:
            yield Producer(name, Flask(__name__), signal, client.flush)
            return
        app = stack.enter_context(host_app(database_url))
        yield Producer(name, app, signal, client.flush, commit="after")


def _options(options: dict[str, t.Any]) -> str:
    return ", ".join(f"{key}={value:,}" for key, value in options.items())


@dataclasses.dataclass
class ThroughputResult:
    name: str
    n: int
    produce_s: float
    total_s: float
    received: int
    duplicates: int
    rejected: int
    requests: int
    send_median_ms: float
    send_p99_ms: float
    threads: int = 1
    database: str = ""

    @property
    def completions_per_s(self) -> float:
        return self.n / self.total_s

    @property
    def lost(self) -> int:
        return 3 * self.n - self.received


def throughput(
    producer: Producer, standin: StandIn, n: int, threads: int = 1, stall: float = 15.0
) -> ThroughputResult:
    """``n`` completions from the first signal until the stand-in has 3n messages."""
    standin.reset()
    started = time.perf_counter()
    times = producer.send_threaded(n, threads)
    produced = time.perf_counter()
    finished, stats = standin.wait_for(3 * n, stall=stall)
    return ThroughputResult(
        producer.name,
        n,
        produced - started,
        finished - started,
        stats["accepted"],
        stats["duplicates"],
        stats["rejected"],
        stats["requests"],
        median(times) * 1000,
        percentile(times, 99) * 1000,
        threads,
        producer.database,
    )


@dataclasses.dataclass
class LatencyResult:
    name: str
    samples: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rate: float = 0.0


def latency(
    producer: Producer, standin: StandIn, samples: int, rate: float = 200.0
) -> LatencyResult:
    """Completion → all three messages received, ``rate`` completions a second
    on a fixed schedule (a late one is sent at once, not skipped)."""
    standin.reset()
    sent_at: dict[str, float] = {}
    started = time.perf_counter()
    for i in range(samples):
        wait = started + i / rate - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        user_id = f"latency-{i}"
        sent_at[user_id] = time.time()
        producer.send(1, offset=20_000_000 + i, user_id=user_id)
    standin.wait_for(3 * samples, stall=10)
    arrived: dict[str, float] = {}
    for message in standin.messages():
        user_id = message.get("userId")
        if user_id in sent_at:
            received = parse_iso(message["receivedAt"])
            arrived[user_id] = max(arrived.get(user_id, 0.0), received)
    delays = [(arrived[u] - sent_at[u]) * 1000 for u in sent_at if u in arrived]
    if len(delays) < samples:
        raise RuntimeError(f"{producer.name}: {samples - len(delays)} never arrived")
    return LatencyResult(
        producer.name,
        samples,
        median(delays),
        percentile(delays, 99),
        max(delays),
        rate,
    )


def standin_capacity(standin: StandIn, messages: int, threads: int = 2) -> float:
    """Messages per second the stand-in accepts in batches of 100 (its ceiling)."""
    import base64
    import concurrent.futures
    import uuid

    import requests

    auth = base64.b64encode(f"{hostapp.WRITE_KEY}:".encode()).decode()
    headers = {"Authorization": f"Basic {auth}", "Content-Type": "application/json"}

    def post_batches(count: int) -> None:
        with requests.Session() as http:
            for _ in range(count):
                batch = [
                    {
                        "type": "track",
                        "userId": "u-1",
                        "event": "Survey Completed",
                        "messageId": str(uuid.uuid4()),
                        "timestamp": "2026-11-29T10:00:00.000Z",
                        "properties": {"survey_id": "nps-2026", "how_likely": 9},
                    }
                    for _ in range(100)
                ]
                http.post(
                    standin.url + "/v1/batch",
                    json={"batch": batch},
                    headers=headers,
                    timeout=30,
                ).raise_for_status()

    standin.reset()
    per_thread = max(1, messages // 100 // threads)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(post_batches, [per_thread] * threads))
    elapsed = time.perf_counter() - started
    accepted = standin.stats()["accepted"]
    standin.reset()
    return accepted / elapsed
