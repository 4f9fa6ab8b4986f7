"""The saved segment: a named rule set per workspace."""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa
from sqlalchemy import orm

from .base import utcnow

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy


class SegmentModels(t.NamedTuple):
    Segment: t.Any


def make_segment_models(db: SQLAlchemy) -> SegmentModels:
    """Define ``refiner_segment_segment`` on ``db.metadata`` (once per extension)."""

    class Segment(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "refiner_segment_segment"
        __table_args__ = (
            sa.UniqueConstraint(
                "workspace_id", "name", name="uq_refiner_segment_segment_name"
            ),
        )

        id: orm.Mapped[int] = orm.mapped_column(sa.Integer, primary_key=True)
        workspace_id: orm.Mapped[str] = orm.mapped_column(sa.String(64))
        name: orm.Mapped[str] = orm.mapped_column(sa.String(255))
        rules: orm.Mapped[t.Any] = orm.mapped_column(sa.JSON)
        created_at: orm.Mapped[dt.datetime] = orm.mapped_column(default=utcnow)
        updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(
            default=utcnow, onupdate=utcnow
        )

    return SegmentModels(Segment=Segment)
