"""Deprecated: the RQ jobs' 0.1 location, kept so that jobs queued before an
upgrade still run. New jobs are enqueued as ``flask_refiner_segment.outbound.jobs.*``.
Removed in 0.3."""

from __future__ import annotations

from .outbound.jobs import deliver as deliver
from .outbound.jobs import record_completion as record_completion
from .outbound.jobs import sweep as sweep
