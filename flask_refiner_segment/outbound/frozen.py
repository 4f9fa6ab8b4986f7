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

from ..core.completion import InvalidCompletion
from ..core.lifecycle import build_payload_messages
from ..core.messages import BuildOptions
from ..core.messages import MessageTooLarge
from . import outbox
from .fence import Change
from .fence import fenced_update

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
    return prepare_many(state, [(rows, options, workspace_id)])[0]


def prepare_many(
    state: State,
    batches: t.Sequence[tuple[t.Sequence[Claimed], BuildOptions, str]],
) -> list[Prepared]:
    """:func:`prepare` for several workspaces' claimed rows (each with its
    build options), with one :func:`freeze` for all."""
    found: list[Prepared] = []
    new: dict[int, str] = {}
    for rows, options, workspace_id in batches:
        prepared = Prepared()
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
        found.append(prepared)
    to_freeze = [r for p in found for r in p.rows if int(r.id) in new]
    frozen = set(freeze(state, to_freeze, new))
    if len(frozen) < len(new):
        for prepared in found:
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
    return found


def freeze(state: State, rows: t.Sequence[Claimed], texts: dict[int, str]) -> list[int]:
    """Store ``texts[row.id]`` as the messages of the claimed ``rows``.

    One ``UPDATE`` for all, fenced like every state change
    (:func:`.fence.fenced_update`): only rows still ``sending`` under their
    claim's token, and never over messages already stored. Returns the ids
    that changed.
    """
    if not rows:
        return []
    table = outbox.delivery_table(state)
    changes: list[Change] = [([row], {"messages": texts[int(row.id)]}) for row in rows]

    def apply() -> list[int]:
        with outbox.bookkeeping(state) as conn:
            changed = fenced_update(
                conn, table, changes, where=table.c.messages.is_(None)
            )
        return sorted(i for ids in changed for i in ids)

    return outbox.retrying(state, apply)
