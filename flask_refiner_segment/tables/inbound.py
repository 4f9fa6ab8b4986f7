"""Inbound tables: what Segment sends to this app as a destination.

Everything is scoped by ``workspace_id`` (one tenant each) and keyed by Segment's
ids (``userId``, ``groupId``), so the tables need no joins to the host's own users.

Traits are stored one row per ``(workspace, subject, top-level key)``:

- ``value`` holds the trait as JSON (JSONB on PostgreSQL), nested objects
  included, so a segment rule can reach ``address.city`` with a JSON path
  (``Trait.value[("address", "city")].as_string()`` compiles to ``#>>`` on
  PostgreSQL and ``json_extract`` on SQLite);
- ``value_type``, ``value_text`` and ``value_num`` are projections of scalar
  values for plain, indexable SQL comparisons (``value_num`` is also set for
  strings that spell a decimal number, e.g. ``"42"``);
- ``value_at`` is the ``timestamp`` of the message that set the value: an
  older message never overwrites a newer value (the upsert's ``WHERE``).
"""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql

from .base import BigId
from .base import utcnow

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

#: JSON everywhere; JSONB on PostgreSQL (indexable, comparable).
JsonValue = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

#: Length of ids (``userId``, ``groupId``, ``messageId``) and of keys and event names.
ID_LENGTH = 255


class _WorkspaceKey:
    """The first key column of the keyed tables: the workspace.

    The key columns sort first, in this order: ``workspace_id``, ``user_id``,
    ``group_id`` (``sort_order`` -3, -2, -1), whatever mixins a table takes.
    """

    workspace_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(64), primary_key=True, sort_order=-3
    )


class _UserKey(_WorkspaceKey):
    """Keyed by workspace and Segment ``userId``."""

    user_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(ID_LENGTH), primary_key=True, sort_order=-2
    )


class _AccountKey(_WorkspaceKey):
    """Keyed by workspace and Segment ``groupId``."""

    group_id: orm.Mapped[str] = orm.mapped_column(
        sa.String(ID_LENGTH), primary_key=True, sort_order=-1
    )


class _Seen:
    """Earliest and latest ``timestamp`` of the stored messages of a key."""

    first_seen_at: orm.Mapped[dt.datetime]
    last_seen_at: orm.Mapped[dt.datetime]


class _Subject(_Seen):
    """A user or an account: when it was seen, and when its row last changed
    (the last column, ``sort_order=1``)."""

    updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        default=utcnow, sort_order=1
    )


class _TraitColumns:
    """The columns of a trait row, shared by user and account traits."""

    __tablename__: str

    @orm.declared_attr.directive
    def __table_args__(cls) -> tuple[t.Any, ...]:
        return (
            sa.Index(f"ix_{cls.__tablename__}_num", "workspace_id", "key", "value_num"),
        )

    key: orm.Mapped[str] = orm.mapped_column(sa.String(ID_LENGTH), primary_key=True)
    #: The value as given (JSON ``null`` for a trait set to null).
    value: orm.Mapped[t.Any] = orm.mapped_column(JsonValue)
    #: ``string``, ``number``, ``boolean``, ``null``, ``object`` or ``array``.
    value_type: orm.Mapped[str] = orm.mapped_column(sa.String(8))
    #: Scalars as text (``true``/``false`` for booleans); NULL for objects/arrays.
    value_text: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
    #: Numbers, and strings that spell a decimal number; else NULL.
    value_num: orm.Mapped[float | None] = orm.mapped_column(sa.Float)
    #: ``timestamp`` of the message that set the value (orders concurrent writers).
    value_at: orm.Mapped[dt.datetime]
    updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(default=utcnow)


class _CallColumns:
    """The columns of a recorded call (``track``, ``page``, ``screen``).

    A call's own columns go between the head (``sort_order=-1``) and the tail
    (``sort_order=1``).
    """

    id: orm.Mapped[int] = orm.mapped_column(BigId, primary_key=True, sort_order=-1)
    workspace_id: orm.Mapped[str] = orm.mapped_column(sa.String(64), sort_order=-1)
    user_id: orm.Mapped[str] = orm.mapped_column(sa.String(ID_LENGTH), sort_order=-1)
    message_id: orm.Mapped[str] = orm.mapped_column(sa.String(ID_LENGTH), sort_order=-1)
    properties: orm.Mapped[t.Any] = orm.mapped_column(JsonValue, sort_order=1)
    timestamp: orm.Mapped[dt.datetime] = orm.mapped_column(sort_order=1)
    received_at: orm.Mapped[dt.datetime] = orm.mapped_column(
        default=utcnow, sort_order=1
    )


class InboundModels(t.NamedTuple):
    """The concrete inbound model classes of one extension instance."""

    InboundMessage: t.Any
    Profile: t.Any
    UserTrait: t.Any
    Account: t.Any
    AccountTrait: t.Any
    Membership: t.Any
    Event: t.Any
    View: t.Any


def make_inbound_models(db: SQLAlchemy) -> InboundModels:
    """Define the inbound tables on ``db.metadata`` (called once per extension)."""

    class InboundMessage(_WorkspaceKey, db.Model):  # type: ignore[name-defined,misc]
        """A ``messageId`` already applied: the idempotency record.

        Inserted in the same transaction as the data; the primary key makes a
        concurrent second delivery of the same message a no-op. It holds no
        user data, so it survives a ``delete``.
        """

        __tablename__ = "refiner_segment_inbound_message"
        __table_args__ = (
            sa.Index("ix_refiner_segment_inbound_message_received", "received_at"),
        )

        message_id: orm.Mapped[str] = orm.mapped_column(
            sa.String(ID_LENGTH), primary_key=True
        )
        type: orm.Mapped[str] = orm.mapped_column(sa.String(16))
        received_at: orm.Mapped[dt.datetime] = orm.mapped_column(default=utcnow)

    class Profile(_UserKey, _Subject, db.Model):  # type: ignore[name-defined,misc]
        """A user Segment told us about (by ``userId``)."""

        __tablename__ = "refiner_segment_profile"

    class UserTrait(_UserKey, _TraitColumns, db.Model):  # type: ignore[name-defined,misc]
        """One top-level trait of a user (``identify``)."""

        __tablename__ = "refiner_segment_user_trait"

    class Account(_AccountKey, _Subject, db.Model):  # type: ignore[name-defined,misc]
        """An account (Segment group) by ``groupId``."""

        __tablename__ = "refiner_segment_account"

    class AccountTrait(_AccountKey, _TraitColumns, db.Model):  # type: ignore[name-defined,misc]
        """One top-level trait of an account (``group``)."""

        __tablename__ = "refiner_segment_account_trait"

    class Membership(_UserKey, _AccountKey, _Seen, db.Model):  # type: ignore[name-defined,misc]
        """A user ↔ account link, made by a ``group`` call."""

        __tablename__ = "refiner_segment_membership"
        __table_args__ = (
            sa.Index("ix_refiner_segment_membership_group", "workspace_id", "group_id"),
        )

    class Event(_CallColumns, db.Model):  # type: ignore[name-defined,misc]
        """A ``track`` call: event name, properties and time."""

        __tablename__ = "refiner_segment_event"
        __table_args__ = (
            sa.Index(
                "ix_refiner_segment_event_user", "workspace_id", "user_id", "timestamp"
            ),
            # Segment counts: the users with events of a name in a window,
            # read from the index alone (user_id last).
            sa.Index(
                "ix_refiner_segment_event_name_user",
                "workspace_id",
                "name",
                "timestamp",
                "user_id",
            ),
            sa.Index("ix_refiner_segment_event_time", "timestamp"),
            # Segment rules: "performed <name> at least N times in D days".
            sa.Index(
                "ix_refiner_segment_event_user_name",
                "workspace_id",
                "user_id",
                "name",
                "timestamp",
            ),
        )

        name: orm.Mapped[str] = orm.mapped_column(sa.String(ID_LENGTH))

    class View(_CallColumns, db.Model):  # type: ignore[name-defined,misc]
        """A ``page`` or ``screen`` call."""

        __tablename__ = "refiner_segment_view"
        __table_args__ = (
            sa.Index(
                "ix_refiner_segment_view_user", "workspace_id", "user_id", "timestamp"
            ),
            sa.Index("ix_refiner_segment_view_time", "timestamp"),
        )

        #: ``"page"`` or ``"screen"``.
        kind: orm.Mapped[str] = orm.mapped_column(sa.String(8))
        name: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
        category: orm.Mapped[str | None] = orm.mapped_column(sa.Text)

    return InboundModels(
        InboundMessage=InboundMessage,
        Profile=Profile,
        UserTrait=UserTrait,
        Account=Account,
        AccountTrait=AccountTrait,
        Membership=Membership,
        Event=Event,
        View=View,
    )
