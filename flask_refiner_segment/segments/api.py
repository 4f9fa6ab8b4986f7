"""Deprecated: the segments functions of 0.1. Use the extension's methods
(``refiner_segment.create_segment(...)``, ``refiner_segment.segment_count(...)``, ...).
"""

from __future__ import annotations

import typing as t

from ..deprecation import Moved
from ..deprecation import moved
from . import service


def _members_query(workspace_id: str | None, rules: service.Rules) -> t.Any:
    return service.members_query(workspace_id, rules)


_MOVED: Moved = {
    "count": (service.count, "refiner_segment.segment_count"),
    "members": (service.members, "refiner_segment.segment_members"),
    "members_query": (_members_query, "refiner_segment.segment_query"),
    **{
        name: (getattr(service, name), f"refiner_segment.{name}")
        for name in (
            "is_member",
            "create_segment",
            "get_segment",
            "list_segments",
            "update_segment",
            "delete_segment",
        )
    },
}


def __getattr__(name: str) -> t.Any:
    return moved(__name__, name, _MOVED)
