"""Real parts for the tests: Redis, PostgreSQL and SQLite, a Segment stand-in."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.testing.embedded_redis import EmbeddedRedis
from flask_refiner_segment.testing.standin import SegmentStandIn
from flask_refiner_segment.testing.standin import serve

from . import hostapp

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "REFINER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
#: CI sets this so that an unreachable PostgreSQL fails instead of skipping.
REQUIRE_POSTGRES = os.environ.get("REFINER_TEST_REQUIRE_POSTGRES") == "1"


class RedisServer(EmbeddedRedis):
    """A private redis-server process on a free port (stopped and started by tests)."""


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """``REDIS_URL`` when set (its database is flushed!), else a private server."""
    return os.environ.get("REFINER_TEST_REDIS_URL") or redis_server.url


@pytest.fixture
def redis_conn(redis_url: str) -> t.Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.flushdb()
    conn.close()


@pytest.fixture(scope="session")
def _segment_server() -> t.Iterator[tuple[SegmentStandIn, t.Any]]:
    standin = SegmentStandIn()
    server = serve(standin)
    yield standin, server
    server.shutdown()


@pytest.fixture
def segment(_segment_server: tuple[SegmentStandIn, t.Any]) -> SegmentStandIn:
    """The Segment stand-in, emptied; ``segment.url`` is its base URL."""
    standin, server = _segment_server
    standin.reset()
    standin.clear_faults()
    standin.keep_bodies = False
    standin.on_request = None
    standin.url = server.url  # type: ignore[attr-defined]
    return standin


@pytest.fixture(scope="session")
def postgres_url() -> t.Iterator[str | None]:
    """A database of this test run's own on the server of ``REFINER_TEST_POSTGRES_URL``.

    Other runs (or other users of the ``test`` database) cannot drop our tables
    mid-test. Falls back to the URL itself when databases can't be created;
    ``None`` when the server is unreachable.
    """
    base = sa.make_url(POSTGRES_URL)
    name = f"refiner_test_{os.getpid()}_{int(time.time())}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError:
        admin.dispose()
        yield None
        return
    except sa.exc.SQLAlchemyError:
        admin.dispose()
        yield POSTGRES_URL
        return
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None
) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    if postgres_url is None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    _drop_refiner_tables(postgres_url)
    return postgres_url


def _drop_refiner_tables(url: str) -> None:
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    tables = [tbl for name, tbl in meta.tables.items() if name.startswith("refiner_")]
    meta.drop_all(engine, tables=tables)
    engine.dispose()


@pytest.fixture
def app_config(
    database_url: str, redis_url: str, redis_conn: redis.Redis, segment: SegmentStandIn
) -> dict[str, t.Any]:
    """Config of a host app wired to the real parts, with fast retry timings."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REFINER_SEGMENT_REDIS_URL": redis_url,
        "REFINER_SEGMENT_WRITE_KEY": "wk_test_3fa9",
        "REFINER_SEGMENT_API_HOST": segment.url,  # type: ignore[attr-defined]
        "REFINER_SEGMENT_BACKOFF_BASE": 0.2,
        "REFINER_SEGMENT_BACKOFF_MAX": 0.5,
        "REFINER_SEGMENT_CONNECT_TIMEOUT": 0.5,
        "REFINER_SEGMENT_READ_TIMEOUT": 0.5,
        "REFINER_SEGMENT_JOB_RETRY_INTERVALS": [1],
        "REFINER_SEGMENT_LEASE_SECONDS": 30,
        "REFINER_SEGMENT_SETTINGS_CACHE_SECONDS": 0,
    }


@pytest.fixture(autouse=True)
def _push_request_context() -> None:
    """Turn off pytest-flask's request context around every test.

    A context pushed for a whole test keeps one ``db.session`` alive across the
    contexts the code under test pushes (Flask-SQLAlchemy's docs warn about it),
    which hides session bugs and holds PostgreSQL locks. Tests push contexts
    where they need them; pytest-flask's ``client`` fixture still works.
    """


@pytest.fixture
def make_app(app_config: dict[str, t.Any]) -> t.Iterator[t.Callable[..., Flask]]:
    """Build host apps on the test's database; ``make_app(KEY=value)`` overrides."""
    apps: list[Flask] = []

    def make(**overrides: t.Any) -> Flask:
        app = hostapp.create_app({**app_config, **overrides})
        apps.append(app)
        return app

    yield make
    for index, app in enumerate(apps):
        db = app.extensions["test_db"]
        with app.app_context():
            db.session.remove()
            if index == 0 and app.config["SQLALCHEMY_DATABASE_URI"].startswith(
                "postgresql"
            ):
                db.drop_all()
            db.engine.dispose()


@pytest.fixture
def app(make_app: t.Callable[..., Flask]) -> Flask:
    """A host app (tests/hostapp.py) wired to the real parts."""
    return make_app()


def completion(
    n: int = 1,
    *,
    user_id: t.Any = "u-1",
    answers: dict[str, t.Any] | None = None,
    account: dict[str, t.Any] | None = None,
    survey_id: str = "nps-2026",
    **extra: t.Any,
) -> dict[str, t.Any]:
    """The keyword arguments of one ``survey_completed`` signal (SPEC §1)."""
    return {
        "user_id": user_id,
        "survey": {
            "id": survey_id,
            "name": "NPS Survey",
            "questions": [
                {"key": "how_likely", "text": "How likely?", "type": "nps"},
                {"key": "Company Size", "scope": "account"},
            ],
        },
        "response": {
            "id": f"r-{n}",
            "completed_at": dt.datetime(
                2026, 11, 28, 12, 0, n % 60, tzinfo=dt.timezone.utc
            ),
            "answers": answers
            if answers is not None
            else {"how_likely": 9, "role": "Engineer", "Company Size": "50-200"},
        },
        "account": account
        if account is not None
        else {"id": "acct-42", "traits": {"name": "Acme"}},
        "user_traits": {"email": f"user{n}@example.com"},
        **extra,
    }


def send_completion(app: Flask, n: int = 1, **kwargs: t.Any) -> None:
    """Send ``survey_completed`` as a host does: in a request context, after commit."""
    with app.test_request_context():
        hostapp.survey_completed.send(app, **completion(n, **kwargs))


def run_worker(app: Flask, redis_url: str, *, backfill: bool = False) -> None:
    """A real RQ worker (no fork) with its scheduler, in burst mode, on the
    live queue (with ``backfill``, then the backfill queue).

    RQ's worker makes SIGINT and SIGTERM request its warm shutdown and leaves
    them so: they are put back, or Ctrl-C (or a CI's SIGTERM) would no longer
    stop the test run once a worker has run.
    """
    from rq import Queue
    from rq import SimpleWorker

    state = app.extensions["refiner_segment"]
    conn = redis.Redis.from_url(redis_url)
    names = [state.config.queue] + ([state.config.backfill_queue] if backfill else [])
    queues = [Queue(name, connection=conn) for name in names]
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with app.app_context():
            SimpleWorker(queues, connection=conn).work(burst=True, with_scheduler=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        conn.close()


def drain(
    app: Flask, redis_url: str, until: t.Callable[[], bool], timeout: float = 20
) -> None:
    """Run burst workers until ``until()`` holds (scheduled retries included)."""
    deadline = time.monotonic() + timeout
    while True:
        run_worker(app, redis_url)
        if until():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met before the timeout: {until()}")
        time.sleep(0.2)


def flask_cli(
    args: list[str], env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``flask --app tests.hostapp:create_app ...`` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "tests.hostapp:create_app", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def kill_worker(proc: subprocess.Popen[t.Any]) -> None:
    """SIGKILL a ``flask refiner-segment worker`` started in a session of its own,
    work horses included, and wait until all of it is gone.

    RQ puts each work horse (the forked process running a job) in a process
    group of its own, so ``os.killpg(proc.pid, SIGKILL)`` alone leaves the horse
    finishing its batch, orphaned, after its worker "died" — into the next test.
    The worker's group is stopped first so that it forks no horse meanwhile.
    """
    try:
        os.killpg(proc.pid, signal.SIGSTOP)
    except ProcessLookupError:
        pass
    pids = _descendants(proc.pid)
    groups = {proc.pid}
    for pid in pids:
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"processes {pids} outlived SIGKILL"
        time.sleep(0.01)


def _descendants(root: int) -> list[int]:
    """The pids of ``root``'s descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


CHROMIUM = os.environ.get("REFINER_TEST_CHROMIUM", "/usr/bin/chromium")


def launch_chromium(playwright: t.Any) -> t.Any:
    """Debian's headless Chromium (no Playwright browser download needed)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("REFINER_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"Chromium is required at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
        ],
    )


def cli_environment(app_config: dict[str, t.Any], **extra: str) -> dict[str, str]:
    """Environment pointing ``flask --app tests.hostapp`` at a test's parts."""
    return {
        "SQLALCHEMY_DATABASE_URI": app_config["SQLALCHEMY_DATABASE_URI"],
        "REFINER_SEGMENT_REDIS_URL": app_config["REFINER_SEGMENT_REDIS_URL"],
        "REFINER_SEGMENT_WRITE_KEY": app_config["REFINER_SEGMENT_WRITE_KEY"],
        "REFINER_SEGMENT_API_HOST": app_config["REFINER_SEGMENT_API_HOST"],
        "REFINER_SEGMENT_BACKOFF_BASE": "0.2",
        "REFINER_SEGMENT_BACKOFF_MAX": "0.5",
        "REFINER_SEGMENT_JOB_RETRY_INTERVALS": "[1]",
        **extra,
    }
