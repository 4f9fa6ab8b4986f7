"""The signal sent inside the host's transaction (SPEC §1, the transactional
outbox): the completion joins the host's transaction on ``db.session``'s
connection in a SAVEPOINT and the drain is kicked after the commit. On SQLite
and PostgreSQL, with a real worker and the Segment stand-in."""

from __future__ import annotations

import dataclasses
import gc
import typing as t
import uuid

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.outbound import fallback
from flask_refiner_segment.outbound import hosttx
from rq import Queue
from sqlalchemy import orm

from . import hostapp
from .conftest import completion
from .conftest import run_worker
from .helpers import deliveries


@dataclasses.dataclass
class Host:
    app: Flask
    db: t.Any
    Note: t.Any
    redis: t.Any

    def note(self) -> t.Any:
        note = self.Note(text=uuid.uuid4().hex)
        self.db.session.add(note)
        return note

    def notes(self) -> int:
        with self.app.app_context(), self.db.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(self.Note.__table__)
                ).scalar_one()
            )

    def signal(self, n: int = 1, **kwargs: t.Any) -> None:
        hostapp.survey_completed.send(self.app, **completion(n, **kwargs))

    def queued(self) -> int:
        state = self.app.extensions["refiner_segment"]
        return len(Queue(state.config.queue, connection=self.redis))

    def explain(self, caplog: pytest.LogCaptureFixture) -> str:
        """What Redis and the outbox hold, for an assertion's message."""
        state = self.app.extensions["refiner_segment"]
        queue = Queue(state.config.queue, connection=self.redis)
        registries = {
            name: getattr(queue, f"{name}_job_registry").get_job_ids()
            for name in ("started", "finished", "failed", "scheduled", "deferred")
        }
        rows = [(r.response_id, r.status, r.reason) for r in deliveries(self.app)]
        keys = sorted(k.decode() for k in self.redis.keys("*"))
        logged = [f"{r.levelname} {r.getMessage()}" for r in caplog.records]
        return f"deliveries={rows} {registries=} redis keys={keys} {logged=}"

    def responses(self) -> list[t.Any]:
        state = self.app.extensions["refiner_segment"]
        table = state.tables.outbound.SurveyResponse.__table__
        with self.app.app_context(), self.db.engine.connect() as conn:
            return list(conn.execute(sa.select(table)))


@pytest.fixture
def host(app: Flask, redis_conn: t.Any) -> Host:
    db = app.extensions["test_db"]

    class HostNote(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "host_note"
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        text: orm.Mapped[str] = orm.mapped_column(sa.String(64))

    with app.app_context():
        HostNote.__table__.create(db.engine, checkfirst=True)
    return Host(app=app, db=db, Note=HostNote, redis=redis_conn)


@pytest.mark.parametrize("flush", [True, False], ids=["flushed", "pending"])
def test_commit_records_with_the_host_and_kicks_after(
    host, segment, redis_url, flush, caplog
):
    with host.app.test_request_context():
        host.note()
        if flush:
            host.db.session.flush()  # on SQLite the host now holds the write lock
        host.signal(1)
        assert host.notes() == 0 and deliveries(host.app) == []  # not committed
        assert host.queued() == 0  # the kick waits for the commit
        host.db.session.commit()
        assert host.queued() == 1, host.explain(caplog)
    assert host.notes() == 1
    assert [r.status for r in deliveries(host.app)] == ["pending"]
    assert len(host.responses()) == 1
    assert fallback.length(host.redis) == 0  # never waited on the host's lock
    run_worker(host.app, redis_url)
    assert [r.status for r in deliveries(host.app)] == ["sent"]
    assert len(segment.message_ids()) == 3


@pytest.mark.parametrize("flush", [True, False], ids=["flushed", "pending"])
def test_rollback_records_and_sends_nothing(host, segment, redis_url, flush):
    with host.app.test_request_context():
        host.note()
        if flush:
            host.db.session.flush()
        host.signal(1)
        host.db.session.rollback()
        # The next transaction neither sees nor kicks it.
        host.note()
        host.db.session.commit()
    assert host.notes() == 1
    assert deliveries(host.app) == [] and host.responses() == []
    assert host.queued() == 0
    run_worker(host.app, redis_url)
    assert segment.message_ids() == []


def test_duplicate_and_invalid_inside_the_transaction_keep_the_host_s(host, redis_url):
    with host.app.test_request_context():
        host.note()
        host.signal(1)
        host.signal(1)  # the same content: no second delivery
        host.signal(2, user_id=None)  # skipped
        hostapp.survey_completed.send(host.app, user_id="u", response={"id": None})
        host.note()
        host.db.session.commit()
    assert host.notes() == 2
    assert sorted(r.status for r in deliveries(host.app)) == [
        "failed",
        "pending",
        "skipped",
    ]
    with host.app.test_request_context():
        host.note()
        host.db.session.flush()
        host.signal(1)  # recorded in an earlier transaction: a duplicate
        host.db.session.commit()
    assert host.notes() == 3 and len(deliveries(host.app)) == 3


def test_database_error_in_our_statement_keeps_the_host_s_and_the_completion(
    host, segment, redis_url
):
    state = host.app.extensions["refiner_segment"]
    table = state.tables.outbound.SurveyResponse.__table__
    with host.app.app_context():
        table.drop(host.db.engine)  # our statement fails; the host's do not
    with host.app.test_request_context():
        host.note()
        host.db.session.flush()
        host.signal(1)
        host.note()
        host.db.session.commit()  # a poisoned transaction would raise here
    assert host.notes() == 2
    assert deliveries(host.app) == []
    assert fallback.length(host.redis) == 1  # not lost: it waits in Redis
    with host.app.app_context():
        table.create(host.db.engine)
    run_worker(host.app, redis_url)
    assert [r.status for r in deliveries(host.app)] == ["sent"]
    assert fallback.length(host.redis) == 0
    assert len(segment.message_ids()) == 3


def test_nested_host_savepoints(host, segment, redis_url, caplog):
    with host.app.test_request_context():
        host.note()
        with host.db.session.begin_nested():
            host.note()
            host.signal(1)
        assert host.queued() == 0  # a released savepoint is not the commit
        savepoint = host.db.session.begin_nested()
        host.note()
        host.signal(2)
        savepoint.rollback()  # takes completion 2 with it
        host.db.session.commit()
        assert host.queued() == 1, host.explain(caplog)
    assert host.notes() == 2
    assert [r.response_id for r in deliveries(host.app)] == ["r-1"]
    run_worker(host.app, redis_url)
    assert len(segment.message_ids()) == 3


def test_text_dml_joins_and_a_read_only_transaction_does_not(host):
    table = host.Note.__table__.name
    with host.app.test_request_context():
        host.db.session.execute(sa.text(f"INSERT INTO {table} (text) VALUES ('x')"))  # noqa: S608
        host.signal(1)
        host.db.session.rollback()
    assert deliveries(host.app) == []
    with host.app.test_request_context():
        host.db.session.execute(sa.select(host.Note))
        host.signal(2)  # its own transaction: kept whatever the host does
        host.db.session.rollback()
    assert [r.response_id for r in deliveries(host.app)] == ["r-2"]
    with host.app.test_request_context():
        host.note()
        host.db.session.commit()
        host.signal(3)  # after the commit: its own transaction
        host.db.session.rollback()
    assert [r.response_id for r in deliveries(host.app)] == ["r-2", "r-3"]


def test_every_new_session_factory_is_listened_to():
    """An app factory makes a ``db.session`` per app; a new one often lands at
    the address of one already collected, which SQLAlchemy's listener registry
    (keyed by ``id``) still remembers: each must get the listeners anyway."""
    engine = sa.create_engine("sqlite://")
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    addresses: set[int] = set()
    reused = 0
    for _ in range(500):  # until five factories were made at a reused address
        factory = orm.scoped_session(orm.sessionmaker(engine))
        reused += id(factory) in addresses
        addresses.add(id(factory))
        hosttx.install(factory)
        session = factory()
        session.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert session.info.get(hosttx.WROTE) is True
        factory.remove()
        del factory, session
        # The young generations hold the session's cycles: collecting them is
        # enough to free its address (a full collection takes seconds late in
        # the suite).
        gc.collect(1)
        if reused >= 5:
            break
    assert reused >= 5  # the case above did happen
    engine.dispose()
