"""Apply validated messages in one transaction, idempotently by ``messageId``.

The request's ``messageId``\\ s are inserted into the seen table with
``INSERT .. ON CONFLICT DO NOTHING RETURNING``; only the ids that come back
(new ones) are applied, in the same transaction. A concurrent delivery of the
same message waits on the primary key and then finds it taken, so each message
is stored once. Rows are written in a fixed table order and key order, so two
concurrent requests cannot deadlock each other.

Plain calls (identify, group, track, page, screen) are collected and written
with one bulk upsert per table; ``alias`` and ``delete`` first flush what came
before them, so a batch means what its order says. The SQL statements are
built in :mod:`.statements`. On PostgreSQL a request without ``alias`` or
``delete`` takes :mod:`.onestatement` instead: the same writes in one
autocommit statement.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing as t

import sqlalchemy as sa

from . import onestatement
from .jsonvalues import scalar_projection
from .parse import Message
from .statements import alias_traits_statement
from .statements import claim_statement
from .statements import move_spans_statement
from .statements import seen_statement
from .statements import traits_statement

if t.TYPE_CHECKING:
    from ..tables.inbound import InboundModels

#: Rows per statement for the seen-id insert.
CHUNK = 500


@dataclasses.dataclass
class Counts:
    """What a request did."""

    stored: int = 0
    duplicates: int = 0
    ignored: int = 0


@dataclasses.dataclass
class _Pending:
    """Writes collected between two alias/delete messages."""

    profiles: dict[str, tuple[dt.datetime, dt.datetime]] = dataclasses.field(
        default_factory=dict
    )
    accounts: dict[str, tuple[dt.datetime, dt.datetime]] = dataclasses.field(
        default_factory=dict
    )
    links: dict[tuple[str, str], tuple[dt.datetime, dt.datetime]] = dataclasses.field(
        default_factory=dict
    )
    user_traits: dict[tuple[str, str], tuple[t.Any, dt.datetime]] = dataclasses.field(
        default_factory=dict
    )
    account_traits: dict[tuple[str, str], tuple[t.Any, dt.datetime]] = (
        dataclasses.field(default_factory=dict)
    )
    events: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)
    views: list[dict[str, t.Any]] = dataclasses.field(default_factory=list)


def store(
    engine: sa.Engine,
    models: InboundModels,
    workspace_id: str,
    messages: list[Message],
    now: dt.datetime,
) -> Counts:
    """Store ``messages`` for a workspace in one transaction; return the counts."""
    counts = Counts()
    keep: dict[str, Message] = {}
    for message in messages:
        if message.user_id is None:
            counts.ignored += 1
        elif message.message_id in keep:
            counts.duplicates += 1
        else:
            keep[message.message_id] = message
    if not keep:
        return counts
    if engine.dialect.name == "postgresql" and onestatement.plain(keep.values()):
        new = onestatement.store_plain(
            engine, models, workspace_id, list(keep.values()), now
        )
        counts.duplicates += len(keep) - new
        counts.stored = new
        return counts
    with engine.begin() as conn:
        writer = _Writer(conn, models, workspace_id, now)
        fresh = writer.claim(keep)
        counts.duplicates += len(keep) - len(fresh)
        counts.stored = len(fresh)
        writer.apply([m for m in keep.values() if m.message_id in fresh])
    return counts


class _Writer:
    """The statements of one transaction."""

    def __init__(
        self,
        conn: sa.Connection,
        models: InboundModels,
        workspace_id: str,
        now: dt.datetime,
    ) -> None:
        self.conn = conn
        self.m = models
        self.ws = workspace_id
        self.now = now
        self.pg = conn.dialect.name == "postgresql"
        if not self.pg and conn.dialect.name != "sqlite":
            raise RuntimeError("Inbound storage supports PostgreSQL and SQLite only.")

    def _table(self, model: t.Any) -> sa.Table:
        return t.cast(sa.Table, model.__table__)

    # -- idempotency ---------------------------------------------------------

    def claim(self, messages: dict[str, Message]) -> set[str]:
        """Record the message ids; return those not seen before."""
        table = self._table(self.m.InboundMessage)
        rows = [
            {
                "workspace_id": self.ws,
                "message_id": mid,
                "type": messages[mid].type,
                "received_at": self.now,
            }
            for mid in sorted(messages)
        ]
        fresh: set[str] = set()
        stmt = claim_statement(table, self.pg)
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            fresh.update(self.conn.execute(stmt, chunk).scalars())
        return fresh

    # -- applying ------------------------------------------------------------

    def apply(self, messages: list[Message]) -> None:
        pending = _Pending()
        for msg in messages:
            if msg.type in ("alias", "delete"):
                self.flush(pending)
                pending = _Pending()
                if msg.type == "delete":
                    self.delete_user(t.cast(str, msg.user_id))
                else:
                    self.alias(t.cast(str, msg.previous_id), t.cast(str, msg.user_id))
                    _seen(pending.profiles, t.cast(str, msg.user_id), msg.timestamp)
            else:
                _collect(pending, msg, self.ws, self.now)
        self.flush(pending)

    def flush(self, p: _Pending) -> None:
        m = self.m
        if p.profiles:
            self._upsert_seen(
                m.Profile, ["user_id"], {(k,): v for k, v in p.profiles.items()}
            )
        if p.user_traits:
            self._upsert_traits(m.UserTrait, "user_id", p.user_traits)
        if p.accounts:
            self._upsert_seen(
                m.Account, ["group_id"], {(k,): v for k, v in p.accounts.items()}
            )
        if p.account_traits:
            self._upsert_traits(m.AccountTrait, "group_id", p.account_traits)
        if p.links:
            self._upsert_seen(m.Membership, ["user_id", "group_id"], p.links)
        if p.events:
            self.conn.execute(sa.insert(self._table(m.Event)), p.events)
        if p.views:
            self.conn.execute(sa.insert(self._table(m.View)), p.views)

    def _upsert_seen(
        self,
        model: t.Any,
        keys: list[str],
        spans: t.Mapping[t.Any, tuple[dt.datetime, dt.datetime]],
    ) -> None:
        table = self._table(model)
        extra = {"updated_at": self.now} if "updated_at" in table.c else {}
        rows = [
            {
                "workspace_id": self.ws,
                **dict(zip(keys, key, strict=True)),
                "first_seen_at": first,
                "last_seen_at": last,
                **extra,
            }
            for key, (first, last) in sorted(spans.items())
        ]
        stmt = seen_statement(table, tuple(keys), self.pg)
        self.conn.execute(stmt, rows)

    def _upsert_traits(
        self,
        model: t.Any,
        owner: str,
        traits: dict[tuple[str, str], tuple[t.Any, dt.datetime]],
    ) -> None:
        table = self._table(model)
        rows = []
        for (subject, key), (value, at) in sorted(traits.items()):
            kind, text, num = scalar_projection(value)
            rows.append(
                {
                    "workspace_id": self.ws,
                    owner: subject,
                    "key": key,
                    "value": value,
                    "value_type": kind,
                    "value_text": text,
                    "value_num": num,
                    "value_at": at,
                    "updated_at": self.now,
                }
            )
        stmt = traits_statement(table, owner, self.pg)
        self.conn.execute(stmt, rows)

    # -- alias and delete ----------------------------------------------------

    def alias(self, previous_id: str, user_id: str) -> None:
        """Move everything stored under ``previous_id`` to ``user_id``.

        Traits keep the newer value per key; first/last seen widen.
        """
        if previous_id == user_id:
            return
        m, conn, ws = self.m, self.conn, self.ws
        trait = self._table(m.UserTrait)
        conn.execute(alias_traits_statement(trait, ws, previous_id, user_id, self.pg))
        for model, keys in (
            (m.Profile, ("user_id",)),
            (m.Membership, ("user_id", "group_id")),
        ):
            table = self._table(model)
            conn.execute(
                move_spans_statement(table, keys, ws, previous_id, user_id, self.pg)
            )
        for model in (m.Event, m.View):
            table = self._table(model)
            conn.execute(
                table.update()
                .where(table.c.workspace_id == ws, table.c.user_id == previous_id)
                .values(user_id=user_id)
            )
        self._delete_rows((m.UserTrait, m.Membership, m.Profile), previous_id)

    def delete_user(self, user_id: str) -> None:
        """Erase everything stored for a user (seen message ids stay)."""
        m = self.m
        self._delete_rows(
            (m.UserTrait, m.Membership, m.Event, m.View, m.Profile), user_id
        )

    def _delete_rows(self, models: t.Iterable[t.Any], user_id: str) -> None:
        for model in models:
            table = self._table(model)
            self.conn.execute(
                table.delete().where(
                    table.c.workspace_id == self.ws, table.c.user_id == user_id
                )
            )


def _seen(
    spans: dict[t.Any, tuple[dt.datetime, dt.datetime]], key: t.Any, at: dt.datetime
) -> None:
    span = spans.get(key)
    spans[key] = (min(span[0], at), max(span[1], at)) if span else (at, at)


def _newest(
    traits: dict[tuple[str, str], tuple[t.Any, dt.datetime]],
    subject: str,
    values: dict[str, t.Any],
    at: dt.datetime,
) -> None:
    for key, value in values.items():
        current = traits.get((subject, key))
        if current is None or current[1] <= at:
            traits[(subject, key)] = (value, at)


def _collect(p: _Pending, msg: Message, ws: str, now: dt.datetime) -> None:
    user_id = t.cast(str, msg.user_id)
    _seen(p.profiles, user_id, msg.timestamp)
    if msg.type == "identify":
        _newest(p.user_traits, user_id, msg.traits or {}, msg.timestamp)
    elif msg.type == "group":
        group_id = t.cast(str, msg.group_id)
        _seen(p.accounts, group_id, msg.timestamp)
        _seen(p.links, (user_id, group_id), msg.timestamp)
        _newest(p.account_traits, group_id, msg.traits or {}, msg.timestamp)
    elif msg.type == "track":
        p.events.append(
            {
                "workspace_id": ws,
                "user_id": user_id,
                "message_id": msg.message_id,
                "name": msg.event,
                "properties": msg.properties or {},
                "timestamp": msg.timestamp,
                "received_at": now,
            }
        )
    else:
        p.views.append(
            {
                "workspace_id": ws,
                "user_id": user_id,
                "message_id": msg.message_id,
                "kind": msg.type,
                "name": msg.name,
                "category": msg.category,
                "properties": msg.properties or {},
                "timestamp": msg.timestamp,
                "received_at": now,
            }
        )
