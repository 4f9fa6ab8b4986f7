"""The extension's tables, defined on the host's Flask-SQLAlchemy metadata.

The host creates them with its own ``db.create_all()`` or migrations.
"""

from __future__ import annotations

import typing as t

from .inbound import InboundModels
from .inbound import make_inbound_models
from .outbound import OutboundModels
from .outbound import make_outbound_models
from .segments import SegmentModels
from .segments import make_segment_models

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

__all__ = ["InboundModels", "OutboundModels", "SegmentModels", "Tables", "define"]


class Tables(t.NamedTuple):
    """Every model class of one extension instance."""

    outbound: OutboundModels
    inbound: InboundModels
    segments: SegmentModels


def define(db: SQLAlchemy) -> Tables:
    """Define every table on ``db.metadata`` (once per extension instance)."""
    return Tables(
        outbound=make_outbound_models(db),
        inbound=make_inbound_models(db),
        segments=make_segment_models(db),
    )
