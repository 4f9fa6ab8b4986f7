"""Inbound: Segment calls this app as a destination (SPEC §5).

- :mod:`.models` — the tables (``make_inbound_models``);
- :mod:`.parse` — body and message validation;
- :mod:`.store` — one transaction per request, idempotent by ``messageId``;
- :mod:`.views` — the ``POST {prefix}/inbound`` blueprint;
- :mod:`.api` — reading profiles and events, retention;
- :mod:`.cli` — ``prune-events``.
"""

from __future__ import annotations

from .api import get_account
from .api import get_profile
from .api import prune
from .api import recent_events
from .api import recent_views

__all__ = ["get_account", "get_profile", "prune", "recent_events", "recent_views"]
