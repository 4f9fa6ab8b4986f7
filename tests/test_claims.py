"""flask_refiner_segment.outbound.claims: claiming due deliveries (lease, limit,
due-by, concurrent claims), on SQLite and PostgreSQL, called directly.

The delivery row helpers are test_outbox.py's.
"""

from __future__ import annotations

import datetime as dt
import threading

from flask_refiner_segment.outbound import claims
from flask_refiner_segment.tables import outbound as models
from flask_refiner_segment.tables.base import utcnow

from .test_outbox import FUTURE
from .test_outbox import PAST
from .test_outbox import claim
from .test_outbox import insert
from .test_outbox import row
from .test_outbox import rows
from .test_outbox import set_values
from .test_outbox import state_of

# -- claiming ---------------------------------------------------------------


def test_claim_leases_due_rows_of_the_workspace_in_id_order(make_app):
    app = make_app(REFINER_SEGMENT_LEASE_SECONDS=90)
    ids = insert(app, *(row(n) for n in range(3)), row(9, workspace_id="ws-b"))
    before = utcnow()
    claimed = claim(app, limit=10)
    after = utcnow()
    assert [r.id for r in claimed] == ids[:3]
    assert [r.response_id for r in claimed] == ["r-0", "r-1", "r-2"]
    assert claimed[0].payload == '{"n":0}' and claimed[0].attempts == 0
    assert claimed[0].retry_until is not None
    found = rows(app)
    tokens = {found[f"r-{n}"].claim_token for n in range(3)}
    assert len(tokens) == 1 and None not in tokens  # one token per claim
    for n in range(3):
        r = found[f"r-{n}"]
        assert r.status == models.SENDING
        lease = r.lease_expires_at - dt.timedelta(seconds=90)
        assert before <= lease <= after
    assert found["r-9"].status == models.PENDING
    assert claim(app) == []  # nothing due is left
    assert [r.response_id for r in claim(app, "ws-b")] == ["r-9"]


def test_a_workspace_waiting_out_a_backoff_is_not_claimed(app):
    """One pending delivery not yet due holds its whole workspace back, the
    deliveries recorded since included: Segment gets one probe per backoff,
    not one per completion. Other workspaces are claimed as usual."""
    insert(app, row(1), row(2), row(3, workspace_id="ws-b"))
    set_values(app, ["r-1"], next_attempt_at=FUTURE, attempts=1)  # backing off
    assert claim(app) == []  # r-2 is due, but its workspace waits
    with app.app_context():
        got = claims.claim_many(state_of(app), {"ws-a": 10, "ws-b": 10})
    assert list(got) == ["ws-b"]
    assert [r.response_id for r in got["ws-b"]] == ["r-3"]
    assert rows(app)["r-2"].status == models.PENDING
    set_values(app, ["r-1"], next_attempt_at=PAST)  # the backoff ended
    assert [r.response_id for r in claim(app)] == ["r-1", "r-2"]


def test_a_backfill_is_not_held_by_the_live_lane(app):
    """Backfills have a backoff of their own: a live delivery backing off does
    not hold back the workspace's backfill."""
    insert(app, row(1), row(2))
    set_values(app, ["r-2"], status=models.BACKFILL)
    set_values(app, ["r-1"], next_attempt_at=FUTURE, attempts=1)
    got = claim(app, status=models.BACKFILL)
    assert [r.response_id for r in got] == ["r-2"]


def test_claim_takes_at_most_limit_rows(app):
    ids = insert(app, *(row(n) for n in range(6)))
    first = claim(app, limit=2)
    assert [r.id for r in first] == ids[:2]
    assert [r.id for r in claim(app, limit=3)] == ids[2:5]
    assert [r.id for r in claim(app, limit=3)] == ids[5:]
    found = rows(app)
    assert [found[f"r-{n}"].status for n in range(6)] == [models.SENDING] * 6
    assert len({found[f"r-{n}"].claim_token for n in range(6)}) == 3


def test_claim_due_by_takes_only_rows_due_by_then(app):
    insert(app, row(1), row(2))
    set_values(app, ["r-1"], next_attempt_at=PAST)
    set_values(app, ["r-2"], next_attempt_at=utcnow() - dt.timedelta(seconds=5))
    got = claim(app, due_by=PAST + dt.timedelta(seconds=1))
    assert [r.response_id for r in got] == ["r-1"]
    # A due_by in the future is capped at now.
    set_values(app, ["r-2"], next_attempt_at=FUTURE - dt.timedelta(days=1))
    assert claim(app, due_by=FUTURE) == []


def test_two_claims_at_once_never_share_a_row(app):
    ids = insert(app, *(row(n) for n in range(60)))
    barrier = threading.Barrier(2)
    got: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def worker(slot: int) -> None:
        try:
            barrier.wait(timeout=30)
            got[slot] = [r.id for r in claim(app, limit=60)]
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert not set(got[0]) & set(got[1])
    assert sorted(got[0] + got[1]) == ids
    assert {r.status for r in rows(app).values()} == {models.SENDING}
