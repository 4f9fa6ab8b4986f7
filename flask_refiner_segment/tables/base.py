"""What every table shares: the id column type and the clock of stored times."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

#: A 64-bit key on PostgreSQL, SQLite's rowid on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> dt.datetime:
    """The current time as a naive UTC datetime, the way every column stores it."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
