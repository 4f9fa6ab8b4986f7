"""tests/conftest.py: the test harness's own promises."""

from __future__ import annotations

import signal

from .conftest import run_worker
from .conftest import send_completion
from .helpers import statuses


def test_run_worker_leaves_the_signal_handlers_as_they_were(app, segment, redis_url):
    """RQ's worker installs its warm-shutdown handlers for SIGINT and SIGTERM;
    left in place, Ctrl-C or a CI's SIGTERM would not stop the test run."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    send_completion(app, 1)
    run_worker(app, redis_url)
    assert statuses(app) == {"sent": 1}  # the worker did run
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
