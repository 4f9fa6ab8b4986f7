"""Deliver completed survey responses to Segment, and receive Segment data.

The public API: the :class:`RefinerSegment` extension (its methods), the
signals it sends, and the types its methods return or raise.
"""

from __future__ import annotations

from .crypto import SecretUnavailable
from .extension import RefinerSegment
from .inbound.queries import Account
from .inbound.queries import Event
from .inbound.queries import Profile
from .inbound.queries import View
from .outbound.client import SendResult
from .outbound.settings import WorkspaceSettings
from .segments.rules import SegmentRuleError
from .segments.service import SavedSegment
from .signals import delivery_failed
from .signals import delivery_succeeded
from .signals import inbound_received

__all__ = [
    "Account",
    "Event",
    "Profile",
    "RefinerSegment",
    "SavedSegment",
    "SecretUnavailable",
    "SegmentRuleError",
    "SendResult",
    "View",
    "WorkspaceSettings",
    "delivery_failed",
    "delivery_succeeded",
    "inbound_received",
]
