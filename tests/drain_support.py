"""Workers as separate processes for the drain tests, and waiting for conditions.

``python -m tests.drain_support rq|recovering`` runs an RQ worker on the
extension's queue, inside the host app's context (``tests.hostapp``, configured
from the environment), **without** RQ's scheduler: ``rq`` a plain
:class:`rq.Worker` (what a host's own ``rq worker`` amounts to), ``recovering``
the worker class of ``flask refiner-segment worker``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import redis
from rq import Worker

from .conftest import ROOT
from .conftest import kill_worker


def wait_until(
    condition: t.Callable[[], t.Any], timeout: float = 30, what: str = ""
) -> float:
    """Poll ``condition`` until it holds; the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"timed out: {what or condition}"
        time.sleep(0.05)
    return time.monotonic() - started


def start_worker(
    env: dict[str, str], args: list[str], log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start ``python -m <args>`` in a session of its own, once it registered
    as an RQ worker; its output goes to ``log``."""
    return start_workers(env, args, [log])[0]


def start_workers(
    env: dict[str, str], args: list[str], logs: t.Sequence[Path | None]
) -> list[subprocess.Popen[bytes]]:
    """Start one ``python -m <args>`` per log (all at once, each in a session
    of its own), then wait until every one registered as an RQ worker."""
    procs = []
    for log in logs:
        out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", *args],
                    env={**os.environ, **env},
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        finally:
            if log is not None:
                out.close()  # type: ignore[union-attr]
    connection = redis.Redis.from_url(env["REFINER_SEGMENT_REDIS_URL"])
    try:
        for proc in procs:
            wait_until(
                lambda proc=proc: (
                    proc.poll() is not None
                    or any(w.pid == proc.pid for w in Worker.all(connection=connection))
                ),
                60,
                "the worker registers",
            )
            assert proc.poll() is None, "the worker exited"
    finally:
        connection.close()
    return procs


#: ``flask refiner-segment worker`` on the test host app.
FLASK_WORKER = [
    *("flask", "--app", "tests.hostapp:create_app"),
    *("refiner-segment", "worker"),
]


def flask_worker(
    env: dict[str, str], log: Path | None = None
) -> subprocess.Popen[bytes]:
    """``flask refiner-segment worker`` (with RQ's scheduler)."""
    return start_worker(env, FLASK_WORKER, log)


def plain_worker(
    env: dict[str, str], kind: str, log: Path | None = None
) -> subprocess.Popen[bytes]:
    """A worker without RQ's scheduler (see the module docstring)."""
    return start_worker(env, ["tests.drain_support", kind], log)


def stop(*procs: subprocess.Popen[bytes]) -> None:
    """SIGTERM (RQ's warm shutdown: the current job ends first), else SIGKILL."""
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            kill_worker(proc)


def _main(kind: str) -> None:
    from flask_refiner_segment.outbound import kick
    from flask_refiner_segment.outbound.worker import make_worker

    from . import hostapp

    app = hostapp.create_app()
    state = app.extensions["refiner_segment"]
    with app.app_context():
        connection = redis.Redis.from_url(state.config.redis_url)
        queue = kick.make_queue(state.config, connection)
        state.db.engine.dispose()
        if kind == "rq":
            rq_worker: Worker = Worker([queue], connection=connection)
        else:
            rq_worker = make_worker(state, queue, connection)
        rq_worker.work(with_scheduler=False)


if __name__ == "__main__":
    _main(sys.argv[1])
