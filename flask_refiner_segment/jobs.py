"""Deprecated: the RQ jobs' 0.1 location, kept so that jobs queued before an
upgrade still run (they warn). New jobs are enqueued as
``flask_refiner_segment.outbound.jobs.*``. Removed in 0.3."""

from __future__ import annotations

import typing as t

from .deprecation import Moved
from .deprecation import moved
from .outbound import jobs

_MOVED: Moved = {
    name: (getattr(jobs, name), f"flask_refiner_segment.outbound.jobs.{name}")
    for name in ("deliver", "record_completion", "sweep")
}


def __getattr__(name: str) -> t.Any:
    return moved(__name__, name, _MOVED)
