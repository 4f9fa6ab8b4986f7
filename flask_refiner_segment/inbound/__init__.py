"""Inbound: Segment calls this app as a destination.

The flow: :mod:`.views` (the route) → :mod:`.auth` (API key, signature) →
:mod:`.parse` (body and messages) → :mod:`.store` (one transaction); reading
back: :mod:`.queries`; retention: :mod:`.cli`.

The functions below are deprecated aliases: use the extension's methods
(``refiner_segment.get_profile(...)``, ...).
"""

from __future__ import annotations

from ..deprecation import alias
from . import queries

_OLD = "flask_refiner_segment.inbound."
_NEW = "refiner_segment."

get_account = alias(queries.get_account, _OLD + "get_account", _NEW + "get_account")
get_profile = alias(queries.get_profile, _OLD + "get_profile", _NEW + "get_profile")
recent_events = alias(
    queries.recent_events, _OLD + "recent_events", _NEW + "recent_events"
)
recent_views = alias(queries.recent_views, _OLD + "recent_views", _NEW + "recent_views")
prune = alias(queries.prune, _OLD + "prune", _NEW + "prune_events")

__all__ = ["get_account", "get_profile", "prune", "recent_events", "recent_views"]
