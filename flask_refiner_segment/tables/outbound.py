"""Outbound models, built once per extension on the host's Flask-SQLAlchemy ``db``."""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa
from sqlalchemy import orm

from .base import BigId
from .base import utcnow

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

#: Delivery statuses. ``sending`` is a claimed delivery whose batch is in flight.
PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
SKIPPED = "skipped"
#: A delivery recorded by a backfill: pending, but sent only by the backfill's
#: own jobs (on their own queue), never ahead of live deliveries.
BACKFILL = "backfill"
STATUSES = (PENDING, SENDING, SENT, FAILED, SKIPPED, BACKFILL)


class OutboundModels(t.NamedTuple):
    """The concrete outbound model classes of one extension instance."""

    Workspace: t.Any
    Delivery: t.Any
    SurveyResponse: t.Any


def make_outbound_models(db: SQLAlchemy) -> OutboundModels:
    """Define the outbound tables on ``db.metadata`` (called once per extension)."""

    class Workspace(db.Model):  # type: ignore[name-defined,misc]
        """Settings of one workspace: its Segment source and its inbound key."""

        __tablename__ = "refiner_segment_workspace"

        id: orm.Mapped[int] = orm.mapped_column(BigId, primary_key=True)
        workspace_id: orm.Mapped[str] = orm.mapped_column(sa.String(64), unique=True)
        enabled: orm.Mapped[bool] = orm.mapped_column(default=True)
        write_key_encrypted: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
        write_key_hint: orm.Mapped[str | None] = orm.mapped_column(sa.String(8))
        region: orm.Mapped[str] = orm.mapped_column(sa.String(8), default="us")
        custom_api_host: orm.Mapped[str | None] = orm.mapped_column(sa.String(2048))
        track_event: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
        trait_prefix: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
        #: JSON list of survey ids to send; NULL sends every survey.
        surveys: orm.Mapped[list[str] | None] = orm.mapped_column(sa.JSON)
        #: Also send the survey_shown / survey_dismissed signals as tracks.
        lifecycle_events: orm.Mapped[bool] = orm.mapped_column(
            default=False, server_default=sa.false()
        )
        #: Fingerprint of a write key Segment answered 401/403 for; deliveries
        #: wait while the current key has this fingerprint.
        rejected_key_fingerprint: orm.Mapped[str | None] = orm.mapped_column(
            sa.String(64)
        )
        attention_reason: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
        attention_at: orm.Mapped[dt.datetime | None]
        inbound_key_hash: orm.Mapped[str | None] = orm.mapped_column(
            sa.String(64), unique=True
        )
        inbound_key_hint: orm.Mapped[str | None] = orm.mapped_column(sa.String(8))
        inbound_key_created_at: orm.Mapped[dt.datetime | None]
        webhook_secret_encrypted: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
        updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(
            default=utcnow, onupdate=utcnow
        )

    class Delivery(db.Model):  # type: ignore[name-defined,misc]
        """One completed survey response and its way to Segment."""

        __tablename__ = "refiner_segment_delivery"
        __table_args__ = (
            sa.Index(
                "ix_refiner_segment_delivery_response",
                "workspace_id",
                "response_id",
            ),
            sa.Index(
                "ix_refiner_segment_delivery_due",
                "workspace_id",
                "status",
                "next_attempt_at",
            ),
            # The claim's order: due deliveries by id. Without it SQLite's
            # planner walks the whole table in id order to skip the sort
            # (a claim cost 370 ms at 1M rows instead of 10 ms: bench/outbox.py).
            sa.Index(
                "ix_refiner_segment_delivery_claim",
                "workspace_id",
                "status",
                "id",
            ),
            # Retention: finished deliveries by age (outbound/retention.py);
            # also finds sending rows with an expired lease without a scan.
            sa.Index(
                "ix_refiner_segment_delivery_finished",
                "status",
                "updated_at",
            ),
        )

        id: orm.Mapped[int] = orm.mapped_column(BigId, primary_key=True)
        workspace_id: orm.Mapped[str] = orm.mapped_column(sa.String(64))
        response_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
        survey_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
        user_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
        #: sha256 of the canonical completion JSON; NULL for skipped completions.
        content_hash: orm.Mapped[str | None] = orm.mapped_column(sa.String(64))
        #: The normalized completion as canonical JSON; NULL when skipped.
        payload: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
        #: The Segment messages built from ``payload`` at the first attempt, as
        #: a JSON list (without ``sentAt``): every retry resends them as they are.
        messages: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
        status: orm.Mapped[str] = orm.mapped_column(sa.String(16))
        #: The response's NPS score (0–10), for segments on the latest NPS group.
        nps_score: orm.Mapped[int | None] = orm.mapped_column(sa.SmallInteger)
        #: Why it was skipped, or the last error.
        reason: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
        last_status_code: orm.Mapped[int | None]
        attempts: orm.Mapped[int] = orm.mapped_column(default=0)
        created_at: orm.Mapped[dt.datetime] = orm.mapped_column(default=utcnow)
        updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(
            default=utcnow, onupdate=utcnow
        )
        next_attempt_at: orm.Mapped[dt.datetime | None]
        #: Transient errors are retried until then; afterwards the delivery fails.
        retry_until: orm.Mapped[dt.datetime | None]
        lease_expires_at: orm.Mapped[dt.datetime | None]
        claim_token: orm.Mapped[str | None] = orm.mapped_column(sa.String(32))
        sent_at: orm.Mapped[dt.datetime | None]

        def __repr__(self) -> str:
            return (
                f"<Delivery {self.id} {self.workspace_id}/{self.response_id}"
                f" {self.status}>"
            )

    class SurveyResponse(db.Model):  # type: ignore[name-defined,misc]
        """The latest recorded content of one survey response.

        A completion is delivered when its content differs from this row's
        (the row is then updated in the same statement), so a response edited
        A → B → A is delivered three times and the same content twice once.
        User segments read the answers here: pruning deliveries leaves them.
        """

        __tablename__ = "refiner_segment_response"
        __table_args__ = (
            sa.UniqueConstraint(
                "workspace_id", "response_id", name="uq_refiner_segment_response"
            ),
            sa.Index(
                "ix_refiner_segment_response_user",
                "workspace_id",
                "user_id",
                "survey_id",
            ),
        )

        id: orm.Mapped[int] = orm.mapped_column(BigId, primary_key=True)
        workspace_id: orm.Mapped[str] = orm.mapped_column(sa.String(64))
        response_id: orm.Mapped[str] = orm.mapped_column(sa.String(255))
        user_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
        survey_id: orm.Mapped[str | None] = orm.mapped_column(sa.String(255))
        #: sha256 of the latest canonical completion JSON recorded.
        content_hash: orm.Mapped[str] = orm.mapped_column(sa.String(64))
        #: The latest answers (keyed as the host sent them) as canonical JSON.
        answers: orm.Mapped[str | None] = orm.mapped_column(sa.Text)
        #: The latest NPS score (0–10) of the response, if it has one.
        nps_score: orm.Mapped[int | None] = orm.mapped_column(sa.SmallInteger)
        created_at: orm.Mapped[dt.datetime] = orm.mapped_column(default=utcnow)
        #: When the latest content was recorded.
        updated_at: orm.Mapped[dt.datetime] = orm.mapped_column(default=utcnow)

    return OutboundModels(
        Workspace=Workspace, Delivery=Delivery, SurveyResponse=SurveyResponse
    )
