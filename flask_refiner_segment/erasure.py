"""Erasure of one person's data (``forget_user``, the ``forget-user`` command).

In one transaction of the extension's own:

- deliveries of the user lose their payload and frozen messages (the answers
  and traits) and their user id; their ids, response ids, survey ids, statuses
  and times stay, so the log and its counts still add up. Deliveries not sent
  yet (pending, waiting for a backfill, or in flight) become *skipped* and are
  never sent: a batch already in flight is answered against a fence that no
  longer holds, so nothing is written back;
- recorded responses lose their answers, NPS score and user id (their content
  hash stays, so the same response signalled again is not delivered again);
- inbound data is deleted: traits, events, views, account links and profile.

Completions waiting in the Redis fallback are recorded first, so that none of
the user's comes back afterwards. Nothing is sent to Segment: the README says
how to ask Segment to delete the user too.
"""

from __future__ import annotations

import logging
import typing as t

import redis
import sqlalchemy as sa

from .outbound import fallback
from .tables import outbound as models
from .tables.base import utcnow

if t.TYPE_CHECKING:
    from .state import State

logger = logging.getLogger("flask_refiner_segment")

#: The reason a delivery that was not sent yet is skipped with.
REASON = "erased: the user's data was forgotten before it was sent"
#: Statuses of deliveries that Segment has not taken yet.
UNSENT = (models.PENDING, models.SENDING, models.BACKFILL)


def forget_user(state: State, user_id: str, workspace_id: str) -> dict[str, int]:
    """Erase what the extension holds about ``user_id`` in ``workspace_id``.

    Returns how many rows each part touched: ``deliveries`` (payload removed),
    ``cancelled`` (of those, not sent and now skipped), ``responses``,
    ``traits``, ``events``, ``views``, ``memberships``, ``profiles`` and
    ``fallback`` (completions first recorded from the Redis fallback; ``-1``
    when Redis is unavailable).

    :raise ValueError: ``user_id`` is empty.
    :raise sqlalchemy.exc.SQLAlchemyError: the database refused; nothing changed.
    """
    user_id = str(user_id)
    if not user_id.strip():
        raise ValueError("user_id is empty")
    try:
        recorded, _ = fallback.drain(state)
    except redis.RedisError:
        recorded = -1
        logger.warning(
            "Redis unavailable: completions waiting in the Redis fallback were not"
            " checked before forgetting a user; run forget-user again later."
        )
    out = state.tables.outbound
    inbound = state.tables.inbound
    deliveries = t.cast(sa.Table, out.Delivery.__table__)
    responses = t.cast(sa.Table, out.SurveyResponse.__table__)
    now = utcnow()
    counts: dict[str, int] = {"fallback": recorded}
    with state.db.engine.begin() as conn:
        mine = sa.and_(
            deliveries.c.workspace_id == workspace_id,
            deliveries.c.user_id == user_id,
        )
        counts["cancelled"] = _count(
            conn,
            deliveries.update()
            .where(mine, deliveries.c.status.in_(UNSENT))
            .values(
                status=models.SKIPPED,
                reason=REASON,
                claim_token=None,
                lease_expires_at=None,
                next_attempt_at=None,
                updated_at=now,
            ),
        )
        counts["deliveries"] = _count(
            conn,
            deliveries.update()
            .where(mine)
            .values(payload=None, messages=None, user_id=None),
        )
        counts["responses"] = _count(
            conn,
            responses.update()
            .where(
                responses.c.workspace_id == workspace_id,
                responses.c.user_id == user_id,
            )
            .values(answers=None, nps_score=None, user_id=None),
        )
        for name, model in (
            ("traits", inbound.UserTrait),
            ("memberships", inbound.Membership),
            ("events", inbound.Event),
            ("views", inbound.View),
            ("profiles", inbound.Profile),
        ):
            table = t.cast(sa.Table, model.__table__)
            counts[name] = _count(
                conn,
                table.delete().where(
                    table.c.workspace_id == workspace_id, table.c.user_id == user_id
                ),
            )
    logger.info(
        "Forgot a user of workspace %r: %d deliveries (%d not sent), %d responses,"
        " %d traits, %d events, %d views.",
        workspace_id,
        counts["deliveries"],
        counts["cancelled"],
        counts["responses"],
        counts["traits"],
        counts["events"],
        counts["views"],
    )
    return counts


def _count(conn: sa.Connection, statement: t.Any) -> int:
    return int(conn.execute(statement).rowcount or 0)
