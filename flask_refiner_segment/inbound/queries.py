"""Read what Segment sent: profiles, accounts, events, views; and retention.

Every function needs an app context and takes ``workspace_id`` (``None``: the
default workspace). Datetimes are naive UTC, like every stored column.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa

from ..state import get_state
from ..tables.base import utcnow

if t.TYPE_CHECKING:
    from ..state import State

#: Seen message ids are kept at least this long whatever the retention, so a
#: replay by Segment (which retries for up to 4 hours) stays a no-op.
MIN_SEEN_DAYS = 7


class Event(t.TypedDict):
    """A tracked event."""

    name: str
    properties: dict[str, t.Any]
    timestamp: dt.datetime
    message_id: str


class View(t.TypedDict):
    """A ``page`` or ``screen`` view."""

    kind: str
    name: str | None
    category: str | None
    properties: dict[str, t.Any]
    timestamp: dt.datetime
    message_id: str


class _AccountFields(t.TypedDict):
    group_id: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    traits: dict[str, t.Any]


class Account(_AccountFields, total=False):
    """An account (Segment group); ``user_ids`` only from :func:`get_account`."""

    user_ids: list[str]


class Profile(t.TypedDict):
    """What Segment sent about a user."""

    user_id: str
    workspace_id: str
    first_seen: dt.datetime
    last_seen: dt.datetime
    traits: dict[str, t.Any]
    trait_times: dict[str, dt.datetime]
    accounts: list[Account]
    events: list[Event]


def get_profile(
    user_id: str, workspace_id: str | None = None, *, events_limit: int = 20
) -> Profile | None:
    """A user's profile, or ``None`` when nothing is stored for them.

    ``{"user_id", "workspace_id", "first_seen", "last_seen", "traits": {key: value},
    "trait_times": {key: datetime}, "accounts": [account, ...], "events": [...]}``,
    with each account as :func:`get_account` returns it and the newest
    ``events_limit`` events as :func:`recent_events` returns them.
    """
    state, ws = _scope(workspace_id)
    m = state.tables.inbound
    profile = m.Profile.__table__
    trait = m.UserTrait.__table__
    link = m.Membership.__table__
    with state.db.engine.connect() as conn:
        row = conn.execute(
            sa.select(profile).where(
                profile.c.workspace_id == ws, profile.c.user_id == user_id
            )
        ).first()
        if row is None:
            return None
        traits = conn.execute(
            sa.select(trait.c.key, trait.c.value, trait.c.value_at)
            .where(trait.c.workspace_id == ws, trait.c.user_id == user_id)
            .order_by(trait.c.key)
        ).all()
        group_ids = (
            conn.execute(
                sa.select(link.c.group_id)
                .where(link.c.workspace_id == ws, link.c.user_id == user_id)
                .order_by(link.c.last_seen_at.desc(), link.c.group_id)
            )
            .scalars()
            .all()
        )
        accounts = _accounts(state, conn, ws, list(group_ids))
        events = _events(state, conn, ws, user_id, events_limit)
    return {
        "user_id": user_id,
        "workspace_id": ws,
        "first_seen": row.first_seen_at,
        "last_seen": row.last_seen_at,
        "traits": {r.key: r.value for r in traits},
        "trait_times": {r.key: r.value_at for r in traits},
        "accounts": accounts,
        "events": events,
    }


def get_account(group_id: str, workspace_id: str | None = None) -> Account | None:
    """An account: ``{"group_id", "first_seen", "last_seen", "traits", "user_ids"}``."""
    state, ws = _scope(workspace_id)
    link = state.tables.inbound.Membership.__table__
    with state.db.engine.connect() as conn:
        accounts = _accounts(state, conn, ws, [group_id])
        if not accounts:
            return None
        accounts[0]["user_ids"] = list(
            conn.execute(
                sa.select(link.c.user_id)
                .where(link.c.workspace_id == ws, link.c.group_id == group_id)
                .order_by(link.c.user_id)
            ).scalars()
        )
    return accounts[0]


def recent_events(
    user_id: str, limit: int = 50, workspace_id: str | None = None
) -> list[Event]:
    """A user's newest ``track`` events, newest first.

    ``{"name", "properties", "timestamp", "message_id"}``.
    """
    state, ws = _scope(workspace_id)
    with state.db.engine.connect() as conn:
        return _events(state, conn, ws, user_id, limit)


def recent_views(
    user_id: str, limit: int = 50, workspace_id: str | None = None
) -> list[View]:
    """A user's newest ``page``/``screen`` views, newest first.

    ``{"kind", "name", "category", "properties", "timestamp", "message_id"}``.
    """
    state, ws = _scope(workspace_id)
    view = state.tables.inbound.View.__table__
    with state.db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                view.c.kind,
                view.c.name,
                view.c.category,
                view.c.properties,
                view.c.timestamp,
                view.c.message_id,
            )
            .where(view.c.workspace_id == ws, view.c.user_id == user_id)
            .order_by(view.c.timestamp.desc(), view.c.id.desc())
            .limit(limit)
        ).all()
    return [t.cast(View, dict(r._mapping)) for r in rows]


def prune(
    older_than_days: int | None = None, *, batch_size: int = 5000
) -> dict[str, int]:
    """Delete events and views older than the retention (``EVENT_RETENTION_DAYS``).

    Age is the message ``timestamp``. Seen message ids go after the same age,
    but never before :data:`MIN_SEEN_DAYS`. Deletes in chunks of ``batch_size``
    rows, one transaction each. Returns the counts per kind.
    """
    state = get_state()
    days = (
        state.config.event_retention_days
        if older_than_days is None
        else older_than_days
    )
    if days < 0:
        raise ValueError("older_than_days must be >= 0")
    now = utcnow()
    try:
        cutoff = now - dt.timedelta(days=days)
    except OverflowError:  # older than year 1: nothing is that old
        cutoff = dt.datetime.min
    m = state.tables.inbound
    event, view, seen = m.Event.__table__, m.View.__table__, m.InboundMessage.__table__
    seen_cutoff = min(cutoff, now - dt.timedelta(days=MIN_SEEN_DAYS))
    return {
        "events": _delete_chunks(
            state, event, [event.c.id], event.c.timestamp < cutoff, batch_size
        ),
        "views": _delete_chunks(
            state, view, [view.c.id], view.c.timestamp < cutoff, batch_size
        ),
        "message_ids": _delete_chunks(
            state,
            seen,
            [seen.c.workspace_id, seen.c.message_id],
            seen.c.received_at < seen_cutoff,
            batch_size,
        ),
    }


def _delete_chunks(
    state: State, table: sa.Table, key: list[sa.Column[t.Any]], where: t.Any, size: int
) -> int:
    total = 0
    target = key[0] if len(key) == 1 else sa.tuple_(*key)
    while True:
        chunk = sa.select(*key).where(where).limit(size)
        with state.db.engine.begin() as conn:
            deleted = conn.execute(table.delete().where(target.in_(chunk))).rowcount
        total += deleted
        if deleted < size:
            return total


def _scope(workspace_id: str | None) -> tuple[State, str]:
    state = get_state()
    return state, state.workspace(workspace_id)


def _accounts(
    state: State, conn: sa.Connection, ws: str, group_ids: list[str]
) -> list[Account]:
    if not group_ids:
        return []
    m = state.tables.inbound
    account, trait = m.Account.__table__, m.AccountTrait.__table__
    rows = conn.execute(
        sa.select(account).where(
            account.c.workspace_id == ws, account.c.group_id.in_(group_ids)
        )
    ).all()
    traits: dict[str, dict[str, t.Any]] = {g: {} for g in group_ids}
    for r in conn.execute(
        sa.select(trait.c.group_id, trait.c.key, trait.c.value)
        .where(trait.c.workspace_id == ws, trait.c.group_id.in_(group_ids))
        .order_by(trait.c.group_id, trait.c.key)
    ):
        traits[r.group_id][r.key] = r.value
    by_id: dict[str, Account] = {
        r.group_id: {
            "group_id": r.group_id,
            "first_seen": r.first_seen_at,
            "last_seen": r.last_seen_at,
            "traits": traits[r.group_id],
        }
        for r in rows
    }
    return [by_id[g] for g in group_ids if g in by_id]


def _events(
    state: State, conn: sa.Connection, ws: str, user_id: str, limit: int
) -> list[Event]:
    event = state.tables.inbound.Event.__table__
    rows = conn.execute(
        sa.select(
            event.c.name, event.c.properties, event.c.timestamp, event.c.message_id
        )
        .where(event.c.workspace_id == ws, event.c.user_id == user_id)
        .order_by(event.c.timestamp.desc(), event.c.id.desc())
        .limit(limit)
    ).all()
    return [t.cast(Event, dict(r._mapping)) for r in rows]
