"""Inbound: Segment calls this app as a destination.

The flow: :mod:`.views` (the route) → :mod:`.auth` (API key, signature) →
:mod:`.parse` (body and messages) → :mod:`.store` (one transaction); reading
back: :mod:`.queries`; retention: :mod:`.cli`.

The 0.1 functions ``get_profile``, ``get_account``, ``recent_events``,
``recent_views`` and ``prune`` are deprecated here: use the extension's methods
(``refiner_segment.get_profile(...)``, ...).
"""

from __future__ import annotations

import typing as t

from ..deprecation import Moved
from ..deprecation import moved
from . import queries

_MOVED: Moved = {
    "prune": (queries.prune, "refiner_segment.prune_events"),
    **{
        name: (getattr(queries, name), f"refiner_segment.{name}")
        for name in ("get_account", "get_profile", "recent_events", "recent_views")
    },
}


def __getattr__(name: str) -> t.Any:
    return moved(__name__, name, _MOVED)
