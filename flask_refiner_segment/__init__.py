"""Deliver completed survey responses to Segment, and receive Segment data."""

from __future__ import annotations

from .extension import RefinerSegment
from .signals import delivery_failed
from .signals import delivery_succeeded
from .signals import inbound_received

__all__ = [
    "RefinerSegment",
    "delivery_failed",
    "delivery_succeeded",
    "inbound_received",
]
