"""A delivery's Segment messages: built once, at its first attempt, then frozen.

The messages (``messageId``s and content, without ``sentAt``, which the client
adds per attempt) are stored in ``delivery.messages`` before they are first
sent, and every later attempt resends them as stored, byte for byte, whatever
changed meanwhile (trait prefix, event name, package version). Deliveries
recorded without them (by 0.1, or never attempted) are built at their first
attempt here.
"""

from __future__ import annotations

import dataclasses
import json
import typing as t

import sqlalchemy as sa

from ..core.completion import InvalidCompletion
from ..core.lifecycle import build_payload_messages
from ..core.messages import BuildOptions
from ..core.messages import MessageTooLarge
from ..tables import outbound as models
from ..tables.base import utcnow
from . import outbox

if t.TYPE_CHECKING:
    from ..state import State
    from .outbox import Claimed

Message = dict[str, t.Any]


def dumps(messages: list[Message]) -> str:
    """The stored form of a delivery's messages (compact JSON, as sent)."""
    return json.dumps(
        messages, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


@dataclasses.dataclass
class Prepared:
    """Claimed deliveries with their messages, ready to be sent.

    ``rows[i]`` is sent as ``groups[i]``; ``failed`` are the deliveries whose
    messages cannot be built or read (with the reason); ``lost`` are those whose
    claim was taken over before their messages could be stored.
    """

    rows: list[Claimed] = dataclasses.field(default_factory=list)
    groups: list[list[Message]] = dataclasses.field(default_factory=list)
    failed: list[tuple[Claimed, str]] = dataclasses.field(default_factory=list)
    lost: list[Claimed] = dataclasses.field(default_factory=list)


def prepare(
    state: State,
    rows: t.Sequence[Claimed],
    options: BuildOptions,
    workspace_id: str,
) -> Prepared:
    """The messages of claimed ``rows``: the stored ones as they are, the others
    built now and stored (:func:`freeze`) before anything is sent."""
    prepared = Prepared()
    new: dict[int, str] = {}
    for row in rows:
        try:
            if row.messages is not None:
                text = str(row.messages)
            else:
                text = dumps(
                    build_payload_messages(
                        json.loads(row.payload), options, workspace_id=workspace_id
                    )
                )
                new[int(row.id)] = text
            group = json.loads(text)
            if not isinstance(group, list) or not all(
                isinstance(m, dict) for m in group
            ):
                raise ValueError("stored messages are not a list of objects")
        except (MessageTooLarge, InvalidCompletion, ValueError, TypeError) as exc:
            prepared.failed.append((row, f"cannot be sent: {exc}"))
            continue
        prepared.rows.append(row)
        prepared.groups.append(group)
    frozen = set(freeze(state, [r for r in prepared.rows if int(r.id) in new], new))
    if len(frozen) < len(new):
        keep = [
            i
            for i, row in enumerate(prepared.rows)
            if int(row.id) not in new or int(row.id) in frozen
        ]
        prepared.lost = [
            row
            for row in prepared.rows
            if int(row.id) in new and int(row.id) not in frozen
        ]
        prepared.rows = [prepared.rows[i] for i in keep]
        prepared.groups = [prepared.groups[i] for i in keep]
    return prepared


def freeze(state: State, rows: t.Sequence[Claimed], texts: dict[int, str]) -> list[int]:
    """Store ``texts[row.id]`` as the messages of the claimed ``rows``.

    One ``UPDATE`` per claim (a batch), fenced like every state change: only
    rows still ``sending`` under their claim's token, and never over messages
    already stored. Returns the ids that changed.
    """
    if not rows:
        return []
    table = outbox.delivery_table(state)
    by_claim: dict[str, list[int]] = {}
    for row in rows:
        by_claim.setdefault(str(row.claim_token), []).append(int(row.id))
    now = utcnow()

    def apply() -> list[int]:
        changed: list[int] = []
        with outbox.bookkeeping(state) as conn:
            for token, ids in by_claim.items():
                value = sa.case(
                    {i: texts[i] for i in ids}, value=table.c.id, else_=None
                )
                changed += conn.execute(
                    table.update()
                    .where(
                        table.c.id.in_(ids),
                        table.c.claim_token == token,
                        table.c.status == models.SENDING,
                        table.c.messages.is_(None),
                    )
                    .values(messages=sa.cast(value, sa.Text), updated_at=now)
                    .returning(table.c.id)
                ).scalars()
        return sorted(changed)

    return outbox.retrying(state, apply)
