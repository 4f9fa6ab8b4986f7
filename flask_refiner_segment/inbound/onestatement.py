"""PostgreSQL: a request of plain calls stored by one autocommit statement.

A request whose messages are all ``identify``, ``group``, ``track``, ``page``
or ``screen`` (what Segment sends nearly always) is written by a single
statement, one round trip whatever the batch size: data-modifying CTEs claim
the ``messageId``\\ s (``INSERT .. ON CONFLICT DO NOTHING RETURNING``) and
write only the rows of the claimed ids. The messages and their traits travel
as two JSON arrays of rows (``json_to_recordset``), so the SQL text is the same
for every request and psycopg prepares it once per connection.

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

from ..state import autocommit
from .jsonvalues import scalar_projection
from .parse import Message

if t.TYPE_CHECKING:
    from ..tables.inbound import InboundModels

#: The call types this path stores (``alias`` and ``delete`` take the
#: transaction of :func:`.store.store`).
PLAIN_TYPES = frozenset({"identify", "group", "track", "page", "screen"})

_SPAN = """
        first_seen_at = least(t.first_seen_at, excluded.first_seen_at),
        last_seen_at = greatest(t.last_seen_at, excluded.last_seen_at)"""

_TRAITS = """
{kind}traits AS (
    INSERT INTO {table} AS t (workspace_id, {owner}, key, value, value_type,
                             value_text, value_num, value_at, updated_at)
    SELECT DISTINCT ON (subject, key) :ws, subject, key, CAST(value AS jsonb),
           type, text, num, at, :now
    FROM tr WHERE kind = '{kind}'
    ORDER BY subject, key, at DESC, ord DESC
    ON CONFLICT (workspace_id, {owner}, key) DO UPDATE SET
        value = excluded.value, value_type = excluded.value_type,
        value_text = excluded.value_text, value_num = excluded.value_num,
        value_at = excluded.value_at, updated_at = excluded.updated_at
    WHERE t.value_at <= excluded.value_at
)"""

# The request's messages (``src``), claimed by id; ``new``: those claimed now.
_HEAD = """
WITH src AS (
    SELECT * FROM json_to_recordset(CAST(:messages AS json)) AS s(mid text,
        type text, uid text, gid text, name text, cat text, props jsonb,
        at timestamp, ord int)
),
claimed AS (
    INSERT INTO {message} (workspace_id, message_id, type, received_at)
    SELECT :ws, mid, type, :now FROM src ORDER BY mid
    ON CONFLICT (workspace_id, message_id) DO NOTHING
    RETURNING message_id
),
new AS (SELECT * FROM src WHERE mid IN (SELECT message_id FROM claimed)),
profiles AS (
    INSERT INTO {profile} AS t (workspace_id, user_id, first_seen_at,
                                last_seen_at, updated_at)
    SELECT :ws, uid, min(at), max(at), :now FROM new GROUP BY uid ORDER BY uid
    ON CONFLICT (workspace_id, user_id) DO UPDATE SET{span},
        updated_at = excluded.updated_at
)"""

# The traits of the new messages.
_TR = """
tr AS (
    SELECT * FROM json_to_recordset(CAST(:traits AS json)) AS x(mid text,
        kind text, subject text, key text, value text, type text, text text,
        num float8, at timestamp, ord int)
    WHERE mid IN (SELECT message_id FROM claimed)
)"""

_GROUPS = """
accounts AS (
    INSERT INTO {account} AS t (workspace_id, group_id, first_seen_at,
                                last_seen_at, updated_at)
    SELECT :ws, gid, min(at), max(at), :now FROM new WHERE type = 'group'
    GROUP BY gid ORDER BY gid
    ON CONFLICT (workspace_id, group_id) DO UPDATE SET{span},
        updated_at = excluded.updated_at
),
links AS (
    INSERT INTO {membership} AS t (workspace_id, user_id, group_id,
                                   first_seen_at, last_seen_at)
    SELECT :ws, uid, gid, min(at), max(at) FROM new WHERE type = 'group'
    GROUP BY uid, gid ORDER BY uid, gid
    ON CONFLICT (workspace_id, user_id, group_id) DO UPDATE SET{span}
)"""

_EVENTS = """
events AS (
    INSERT INTO {event} (workspace_id, user_id, message_id, name, properties,
                         timestamp, received_at)
    SELECT :ws, uid, mid, name, props, at, :now FROM new
    WHERE type = 'track' ORDER BY ord
)"""

_VIEWS = """
views AS (
    INSERT INTO {view} (workspace_id, user_id, message_id, kind, name,
                        category, properties, timestamp, received_at)
    SELECT :ws, uid, mid, type, name, cat, props, at, :now
    FROM new WHERE type IN ('page', 'screen') ORDER BY ord
)"""


# What the statement returns: how many ids it claimed.
_TAIL = """
SELECT count(*) FROM claimed"""


@functools.lru_cache(maxsize=256)
def statement(
    models: InboundModels, dialect: sa.Dialect, types: frozenset[str]
) -> sa.TextClause:
    """The statement for one set of inbound tables and the call ``types`` of a
    request (built once each).

    Only the tables those calls write are in it: executing a statement opens
    and locks every table and index it names, whether rows go there or not.
    Its whitespace is squeezed: psycopg caches the parsing of statements up
    to 4 kB, and parses longer ones for every request.
    """

    def name(model: t.Any) -> str:
        return dialect.identifier_preparer.format_table(model.__table__)

    parts = [_HEAD]
    if types & {"identify", "group"}:
        parts.append(_TR)
    if "identify" in types:
        parts.append(_TRAITS.format(kind="u", table="{user_trait}", owner="user_id"))
    if "group" in types:
        parts.append(_GROUPS)
        parts.append(
            _TRAITS.format(kind="a", table="{account_trait}", owner="group_id")
        )
    if "track" in types:
        parts.append(_EVENTS)
    if types & {"page", "screen"}:
        parts.append(_VIEWS)
    sql = ",".join(parts) + _TAIL
    sql = sql.format(
        message=name(models.InboundMessage),
        profile=name(models.Profile),
        account=name(models.Account),
        membership=name(models.Membership),
        user_trait=name(models.UserTrait),
        account_trait=name(models.AccountTrait),
        event=name(models.Event),
        view=name(models.View),
        span=_SPAN,
    )
    return sa.text(" ".join(sql.split()))


def plain(messages: t.Iterable[Message]) -> bool:
    """Whether this path can store ``messages`` (no ``alias`` or ``delete``)."""
    return all(m.type in PLAIN_TYPES for m in messages)


def parameters(
    workspace_id: str, messages: t.Sequence[Message], now: dt.datetime
) -> dict[str, t.Any]:
    """The statement's parameters: the messages and their traits as JSON
    arrays of rows (one ``json.dumps`` each, where arrays of values would be
    dumped value by value)."""
    rows: list[dict[str, t.Any]] = []
    traits: list[dict[str, t.Any]] = []
    for m in messages:
        at = m.timestamp.isoformat()
        rows.append(
            {
                "mid": m.message_id,
                "type": m.type,
                "uid": m.user_id,
                "gid": m.group_id,
                "name": m.event if m.type == "track" else m.name,
                "cat": m.category,
                "props": m.properties or {},
                "at": at,
                "ord": len(rows),
            }
        )
        if m.traits and m.type in ("identify", "group"):
            kind, subject = (
                ("u", m.user_id) if m.type == "identify" else ("a", m.group_id)
            )
            for key, value in m.traits.items():
                # ``value`` as JSON text: a JSON null stays a JSON null.
                kept, text, num = scalar_projection(value)
                traits.append(
                    {
                        "mid": m.message_id,
                        "kind": kind,
                        "subject": subject,
                        "key": key,
                        "value": json.dumps(value, ensure_ascii=False),
                        "type": kept,
                        "text": text,
                        "num": num,
                        "at": at,
                        "ord": len(traits),
                    }
                )
    params = {
        "ws": workspace_id,
        "now": now,
        "messages": json.dumps(rows, ensure_ascii=False),
    }
    if any(m.type in ("identify", "group") for m in messages):
        params["traits"] = json.dumps(traits, ensure_ascii=False)
    return params


def store_plain(
    engine: sa.Engine,
    models: InboundModels,
    workspace_id: str,
    messages: t.Sequence[Message],
    now: dt.datetime,
) -> int:
    """Store plain calls with distinct ids by one autocommit statement; return
    how many were new (the others were stored before)."""
    with autocommit(engine).connect() as conn:
        types = frozenset(m.type for m in messages)
        stmt = statement(models, conn.dialect, types)
        found = conn.execute(stmt, parameters(workspace_id, messages, now))
        return int(found.scalar_one())
