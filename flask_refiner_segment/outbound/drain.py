"""The ``deliver`` job of a workspace: a scheduled retry (or a job queued by
an earlier version) that puts its workspace in the ready set and serves."""

from __future__ import annotations

import logging
import time
import typing as t

from . import kick
from . import ready
from .sender import Turn
from .serve import Server

if t.TYPE_CHECKING:
    from rq import Queue

    from ..state import State

logger = logging.getLogger("flask_refiner_segment")


class Drain:
    """The ``deliver`` job of a workspace (a scheduled retry, or queued by an
    earlier version): the workspace goes to the ready set, then this job
    serves every due workspace."""

    def __init__(
        self,
        state: State,
        workspace_id: str,
        queue: Queue,
        *,
        scheduled: bool = False,
    ) -> None:
        self.state = state
        self.workspace_id = workspace_id
        self.queue = queue
        self.scheduled = scheduled

    def run(self) -> dict[str, int]:
        state, ws = self.state, self.workspace_id
        connection = self.queue.connection
        if self.scheduled and not kick.take_kick(state, connection, ws):
            # The workspace waits in the ready set or has its turn: that turn
            # sends what is due, and schedules what is not.
            logger.info("Workspace %r: a turn is queued or running.", ws)
            return dict.fromkeys(Turn.STATS, 0)
        # A later retry gets scheduled anew. The kick key (a kick's, or taken
        # above) stays until the workspace's turn ends.
        connection.delete(kick.retry_key(ws))
        ready.add(connection, ws, time.time())
        return Server(state, self.queue).run()
