"""Deprecated: the segments functions of 0.1. Use the extension's methods
(``refiner_segment.create_segment(...)``, ``refiner_segment.segment_count(...)``, ...).
"""

from __future__ import annotations

from ..deprecation import alias
from . import service

_OLD = "flask_refiner_segment.segments.api."
_NEW = "refiner_segment."

count = alias(service.count, _OLD + "count", _NEW + "segment_count")
members = alias(service.members, _OLD + "members", _NEW + "segment_members")
members_query = alias(
    service.members_query, _OLD + "members_query", _NEW + "segment_query"
)
is_member = alias(service.is_member, _OLD + "is_member", _NEW + "is_member")
create_segment = alias(
    service.create_segment, _OLD + "create_segment", _NEW + "create_segment"
)
get_segment = alias(service.get_segment, _OLD + "get_segment", _NEW + "get_segment")
list_segments = alias(
    service.list_segments, _OLD + "list_segments", _NEW + "list_segments"
)
update_segment = alias(
    service.update_segment, _OLD + "update_segment", _NEW + "update_segment"
)
delete_segment = alias(
    service.delete_segment, _OLD + "delete_segment", _NEW + "delete_segment"
)
