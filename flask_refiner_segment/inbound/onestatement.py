"""PostgreSQL: a request of plain calls stored by one autocommit statement.

A request whose messages are all ``identify``, ``group``, ``track``, ``page``
or ``screen`` (what Segment sends nearly always) is written by a single
statement, one round trip whatever the batch size: data-modifying CTEs claim
the ``messageId``\\ s (``INSERT .. ON CONFLICT DO NOTHING RETURNING``) and
write only the rows of the claimed ids. The messages travel as arrays (one
parameter per column, ``unnest``), so the SQL text is the same for every
request and psycopg prepares it once per connection.

It stores what :class:`~.store._Writer` stores: per key the seen span widens,
per trait key the value with the newest time wins (on equal times, the later
message), events and views keep the request's order. A concurrent delivery of
a claimed id waits on the primary key and then finds it taken. Upserts write
in key order, so two requests cannot deadlock each other within a table.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import typing as t

import sqlalchemy as sa

from .jsonvalues import scalar_projection
from .parse import Message

if t.TYPE_CHECKING:
    from ..tables.inbound import InboundModels

#: The call types this path stores (``alias`` and ``delete`` take the
#: transaction of :func:`.store.store`).
PLAIN_TYPES = frozenset({"identify", "group", "track", "page", "screen"})

_SPAN = """
        first_seen_at = least({t}.first_seen_at, excluded.first_seen_at),
        last_seen_at = greatest({t}.last_seen_at, excluded.last_seen_at)"""

_TRAITS = """
traits_{name} AS (
    INSERT INTO {t} (workspace_id, {owner}, key, value, value_type, value_text,
                     value_num, value_at, updated_at)
    SELECT DISTINCT ON (x.subject, x.key) :ws, x.subject, x.key,
           CAST(x.value AS jsonb), x.type, x.text, x.num, x.at, :now
    FROM unnest(CAST(:{name}_mid AS text[]), CAST(:{name}_subject AS text[]),
                CAST(:{name}_key AS text[]), CAST(:{name}_value AS text[]),
                CAST(:{name}_type AS text[]), CAST(:{name}_text AS text[]),
                CAST(:{name}_num AS float8[]), CAST(:{name}_at AS timestamp[]))
         WITH ORDINALITY AS x(mid, subject, key, value, type, text, num, at, ord)
    WHERE x.mid IN (SELECT message_id FROM claimed)
    ORDER BY x.subject, x.key, x.at DESC, x.ord DESC
    ON CONFLICT (workspace_id, {owner}, key) DO UPDATE SET
        value = excluded.value, value_type = excluded.value_type,
        value_text = excluded.value_text, value_num = excluded.value_num,
        value_at = excluded.value_at, updated_at = excluded.updated_at
    WHERE {t}.value_at <= excluded.value_at
)"""

_STATEMENT = """
WITH claimed AS (
    INSERT INTO {message} (workspace_id, message_id, type, received_at)
    SELECT :ws, m.id, m.type, :now
    FROM unnest(CAST(:m_id AS text[]), CAST(:m_type AS text[])) AS m(id, type)
    ORDER BY m.id
    ON CONFLICT (workspace_id, message_id) DO NOTHING
    RETURNING message_id
),
seen AS (
    SELECT s.user_id, s.group_id, s.at
    FROM unnest(CAST(:s_mid AS text[]), CAST(:s_user AS text[]),
                CAST(:s_group AS text[]), CAST(:s_at AS timestamp[]))
         AS s(mid, user_id, group_id, at)
    WHERE s.mid IN (SELECT message_id FROM claimed)
),
profiles AS (
    INSERT INTO {profile} (workspace_id, user_id, first_seen_at, last_seen_at,
                           updated_at)
    SELECT :ws, user_id, min(at), max(at), :now FROM seen
    GROUP BY user_id ORDER BY user_id
    ON CONFLICT (workspace_id, user_id) DO UPDATE SET{profile_span},
        updated_at = excluded.updated_at
),
accounts AS (
    INSERT INTO {account} (workspace_id, group_id, first_seen_at, last_seen_at,
                           updated_at)
    SELECT :ws, group_id, min(at), max(at), :now FROM seen
    WHERE group_id IS NOT NULL GROUP BY group_id ORDER BY group_id
    ON CONFLICT (workspace_id, group_id) DO UPDATE SET{account_span},
        updated_at = excluded.updated_at
),
links AS (
    INSERT INTO {membership} (workspace_id, user_id, group_id, first_seen_at,
                              last_seen_at)
    SELECT :ws, user_id, group_id, min(at), max(at) FROM seen
    WHERE group_id IS NOT NULL GROUP BY user_id, group_id ORDER BY user_id, group_id
    ON CONFLICT (workspace_id, user_id, group_id) DO UPDATE SET{membership_span}
),{user_traits},{account_traits},
events AS (
    INSERT INTO {event} (workspace_id, user_id, message_id, name, properties,
                         timestamp, received_at)
    SELECT :ws, e.user_id, e.mid, e.name, CAST(e.properties AS jsonb), e.at, :now
    FROM unnest(CAST(:e_mid AS text[]), CAST(:e_user AS text[]),
                CAST(:e_name AS text[]), CAST(:e_properties AS text[]),
                CAST(:e_at AS timestamp[]))
         WITH ORDINALITY AS e(mid, user_id, name, properties, at, ord)
    WHERE e.mid IN (SELECT message_id FROM claimed)
    ORDER BY e.ord
),
views AS (
    INSERT INTO {view} (workspace_id, user_id, message_id, kind, name, category,
                        properties, timestamp, received_at)
    SELECT :ws, v.user_id, v.mid, v.kind, v.name, v.category,
           CAST(v.properties AS jsonb), v.at, :now
    FROM unnest(CAST(:v_mid AS text[]), CAST(:v_user AS text[]),
                CAST(:v_kind AS text[]), CAST(:v_name AS text[]),
                CAST(:v_category AS text[]), CAST(:v_properties AS text[]),
                CAST(:v_at AS timestamp[]))
         WITH ORDINALITY AS v(mid, user_id, kind, name, category, properties, at, ord)
    WHERE v.mid IN (SELECT message_id FROM claimed)
    ORDER BY v.ord
)
SELECT count(*) FROM claimed
"""


@functools.lru_cache(maxsize=16)
def statement(models: InboundModels, dialect: sa.Dialect) -> sa.TextClause:
    """The statement for one set of inbound tables (built once)."""
    quote = dialect.identifier_preparer.format_table
    names = {
        "message": quote(models.InboundMessage.__table__),
        "profile": quote(models.Profile.__table__),
        "account": quote(models.Account.__table__),
        "membership": quote(models.Membership.__table__),
        "event": quote(models.Event.__table__),
        "view": quote(models.View.__table__),
    }
    user_trait = quote(models.UserTrait.__table__)
    account_trait = quote(models.AccountTrait.__table__)
    return sa.text(
        _STATEMENT.format(
            **names,
            profile_span=_SPAN.format(t=names["profile"]),
            account_span=_SPAN.format(t=names["account"]),
            membership_span=_SPAN.format(t=names["membership"]),
            user_traits=_TRAITS.format(name="ut", t=user_trait, owner="user_id"),
            account_traits=_TRAITS.format(name="at", t=account_trait, owner="group_id"),
        )
    )


def plain(messages: t.Iterable[Message]) -> bool:
    """Whether this path can store ``messages`` (no ``alias`` or ``delete``)."""
    return all(m.type in PLAIN_TYPES for m in messages)


def parameters(
    workspace_id: str, messages: t.Sequence[Message], now: dt.datetime
) -> dict[str, t.Any]:
    """The statement's parameters: one array per column, in request order."""
    p: dict[str, t.Any] = {"ws": workspace_id, "now": now}
    columns = {
        "m": ("id", "type"),
        "s": ("mid", "user", "group", "at"),
        "e": ("mid", "user", "name", "properties", "at"),
        "v": ("mid", "user", "kind", "name", "category", "properties", "at"),
        "ut": ("mid", "subject", "key", "value", "type", "text", "num", "at"),
        "at": ("mid", "subject", "key", "value", "type", "text", "num", "at"),
    }
    for prefix, names in columns.items():
        for name in names:
            p[f"{prefix}_{name}"] = []

    def add(prefix: str, *values: t.Any) -> None:
        for name, value in zip(columns[prefix], values, strict=True):
            p[f"{prefix}_{name}"].append(value)

    for m in messages:
        mid, user, at = m.message_id, m.user_id, m.timestamp
        add("m", mid, m.type)
        add("s", mid, user, m.group_id if m.type == "group" else None, at)
        if m.type == "track":
            add("e", mid, user, m.event, json.dumps(m.properties or {}), at)
        elif m.type in ("page", "screen"):
            props = json.dumps(m.properties or {})
            add("v", mid, user, m.type, m.name, m.category, props, at)
        elif m.traits:
            identify = m.type == "identify"
            prefix, subject = ("ut", user) if identify else ("at", m.group_id)
            for key, value in m.traits.items():
                add(prefix, mid, subject, key, json.dumps(value),
                    *scalar_projection(value), at)  # fmt: skip
    return p


def store_plain(
    engine: sa.Engine,
    models: InboundModels,
    workspace_id: str,
    messages: t.Sequence[Message],
    now: dt.datetime,
) -> int:
    """Store plain calls with distinct ids by one autocommit statement; return
    how many were new (the others were stored before)."""
    auto = engine.execution_options(isolation_level="AUTOCOMMIT")
    with auto.connect() as conn:
        stmt = statement(models, conn.dialect)
        found = conn.execute(stmt, parameters(workspace_id, messages, now))
        return int(found.scalar_one())
