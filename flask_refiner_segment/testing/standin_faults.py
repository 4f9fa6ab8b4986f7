"""The stand-in's programmable faults (:mod:`.standin`)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Fault:
    """What to do instead of answering normally. ``status`` (with ``Retry-After:
    retry_after``) and ``delay`` (seconds) apply to the next ``times`` requests,
    ``None``: until cleared. A batch holding one of ``fail_message_ids`` gets 400
    until cleared."""

    status: int | None = None
    times: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    fail_message_ids: frozenset[str] = frozenset()

    def take(self) -> tuple[Fault, Fault]:
        """This fault applied to one request: what applies, and what is left."""
        times = self.times
        if times is None or (self.status is None and not self.delay):
            return self, self
        if times > 1:
            return self, dataclasses.replace(self, times=times - 1)
        left = Fault(fail_message_ids=self.fail_message_ids)  # used up
        return (self if times == 1 else left), left
