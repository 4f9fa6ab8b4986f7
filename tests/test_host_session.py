"""The extension never commits, flushes or rolls back the host's ``db.session``.

For every public method of RefinerSegment, the ``survey_completed`` signal and
the pages' POST routes: the host has added an object of its own to
``db.session`` (not flushed, as a host's pending ``db.session.add`` is) when the
extension runs. Afterwards the object is still pending, and once the host rolls
back it is not in the database, while what the extension wrote is (it commits
on connections of its own). The signal is the exception: sent in a transaction
with pending work it joins that transaction (SPEC §1), so the host's rollback
takes the completion too. On SQLite and PostgreSQL.

This file covers the public methods and the signals, and holds the ``host``
fixture; the pages' POST routes are in test_host_session_pages.py.
"""

from __future__ import annotations

import dataclasses
import typing as t
import uuid

import pytest
import sqlalchemy as sa
from flask import Flask
from flask import request
from flask_refiner_segment import SavedSegment
from flask_refiner_segment import SendResult
from flask_refiner_segment import WorkspaceSettings
from flask_refiner_segment import workspaces
from flask_refiner_segment.outbound import settings as outbound_settings
from flask_refiner_segment.tables import outbound as models
from sqlalchemy import orm

from . import hostapp
from .conftest import completion
from .conftest import send_completion
from .inbound_support import API_KEY
from .inbound_support import URL as INBOUND_URL
from .inbound_support import seed_inbound
from .inbound_support import segment_headers
from .inbound_support import track

USER = "97980cfea0067"
GROUP = "0e8c78ea9d97a7b8185e8632"
PAGES = "/integrations/segment/"
PREMIUM = {
    "match": "all",
    "conditions": [{"kind": "trait", "key": "plan", "op": "eq", "value": "premium"}],
}


def host_model(db: t.Any) -> t.Any:
    """A model of the host's own, on the host's ``db``."""

    class HostNote(db.Model):  # type: ignore[name-defined,misc]
        __tablename__ = "host_note"
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True)
        text: orm.Mapped[str] = orm.mapped_column(sa.String(64))

    return HostNote


@dataclasses.dataclass
class Host:
    app: Flask
    db: t.Any
    Note: t.Any
    ext: t.Any
    segment: SavedSegment = dataclasses.field(init=False)
    #: Set by ``watch_requests``: what each POST saw (the hooks are registered
    #: before the app's first request, as Flask requires).
    seen: list[dict[str, t.Any]] | None = None

    def new_note(self) -> t.Any:
        note = self.Note(text=uuid.uuid4().hex)
        self.db.session.add(note)
        return note

    def stored(self, note: t.Any) -> int:
        """Rows of ``note`` in the database, seen by a connection of the test's."""
        table = self.Note.__table__
        with self.app.app_context(), self.db.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(table.c.text == note.text)
                ).scalar_one()
            )


def _add_hooks(host: Host) -> None:
    """Before each POST the host adds a pending object; after the view, note
    whether it is still pending, roll back, and whether it reached the database."""

    @host.app.before_request
    def add_pending() -> None:
        if host.seen is not None and request.method == "POST":
            host.seen.append({"note": host.new_note(), "path": request.path})

    @host.app.after_request
    def look(response: t.Any) -> t.Any:
        if host.seen is not None and request.method == "POST":
            entry = host.seen[-1]
            entry["pending"] = entry["note"] in host.db.session.new
            entry["committed"] = host.stored(entry["note"])
            host.db.session.rollback()
            entry["after_rollback"] = host.stored(entry["note"])
            entry["status"] = response.status_code
        return response


@pytest.fixture
def host(make_app: t.Callable[..., Flask], segment: t.Any) -> Host:
    """A host app with data for every method: inbound profiles, an account, old
    events and views, a failed and a stale delivery, a saved segment, and the
    default workspace paused (a rejected key) so that send_test writes."""
    app = make_app(
        REFINER_SEGMENT_INBOUND_API_KEY=API_KEY,
        REFINER_SEGMENT_SETTINGS_CACHE_SECONDS=0,
    )
    db = app.extensions["test_db"]
    ext = app.extensions["refiner_segment"].owner
    ext.settings_guard(lambda: True)
    note_model = host_model(db)
    with app.app_context():
        note_model.__table__.create(db.engine, checkfirst=True)
    host = Host(app=app, db=db, Note=note_model, ext=ext)
    _add_hooks(host)
    seed_inbound(app)
    send_completion(app, 1)
    send_completion(app, 2)
    state = app.extensions["refiner_segment"]
    table = state.tables.outbound.Delivery.__table__
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.response_id == "r-1")
                .values(status=models.FAILED, reason="gave up")
            )
            conn.execute(
                table.update()
                .where(table.c.response_id == "r-2")
                .values(status=models.SENDING, lease_expires_at=sa.func.now())
            )
        host.segment = ext.create_segment("Premium", PREMIUM)
        outbound_settings.mark_rejected(
            state, "default", app.config["REFINER_SEGMENT_WRITE_KEY"], "401"
        )
        db.session.remove()
    return host


def nonzero_counts(host: Host) -> dict[str, int]:
    with host.app.app_context():
        return {k: v for k, v in host.ext.status_counts().items() if v}


# Each case: the call, then a check (in a fresh app context, after the host's
# rollback) that the extension's own work happened and was kept.
Check = t.Callable[[Host, t.Any], None]
CASES: dict[str, tuple[t.Callable[[Host], t.Any], Check]] = {}


def case(name: str, call: t.Callable[[Host], t.Any]) -> t.Callable[[Check], Check]:
    def register(check: Check) -> Check:
        CASES[name] = (call, check)
        return check

    return register


@case("settings", lambda h: h.ext.settings())
def _(h: Host, result: t.Any) -> None:
    assert isinstance(result, WorkspaceSettings) and result.paused


@case("status_counts", lambda h: h.ext.status_counts())
def _(h: Host, result: t.Any) -> None:
    assert result["failed"] == 1 and result["sending"] == 1


@case("requeue", lambda h: h.ext.requeue(force=True))
def _(h: Host, result: t.Any) -> None:
    assert result == {"released": 1, "workspaces": 1}
    assert nonzero_counts(h) == {"failed": 1, "pending": 1}


@case("retry_failed", lambda h: h.ext.retry_failed())
def _(h: Host, result: t.Any) -> None:
    assert result == 1
    assert nonzero_counts(h) == {"pending": 1, "sending": 1}


@case("send_test", lambda h: h.ext.send_test())
def _(h: Host, result: t.Any) -> None:
    assert isinstance(result, SendResult) and result.outcome == "ok"
    with h.app.app_context():
        assert not h.ext.settings().paused  # the pause was lifted and kept


@case(
    "save_settings",
    lambda h: h.ext.save_settings("ws-b", write_key="key-of-ws-b", region="eu"),
)
def _(h: Host, result: t.Any) -> None:
    assert result.sendable and "eu" in result.api_host
    with h.app.app_context():
        assert h.ext.settings("ws-b").write_key == "key-of-ws-b"


@case("rotate_inbound_key", lambda h: h.ext.rotate_inbound_key("ws-b"))
def _(h: Host, result: t.Any) -> None:
    assert isinstance(result, str) and result
    response = h.app.test_client().post(
        INBOUND_URL, json=track("with-new-key"), headers=segment_headers(result)
    )
    assert response.status_code == 200


@case("get_profile", lambda h: h.ext.get_profile(USER))
def _(h: Host, result: t.Any) -> None:
    assert result["traits"]["plan"] == "premium"


@case("get_account", lambda h: h.ext.get_account(GROUP))
def _(h: Host, result: t.Any) -> None:
    assert result["user_ids"] == [USER]


@case("recent_events", lambda h: h.ext.recent_events(USER))
def _(h: Host, result: t.Any) -> None:
    assert [e["name"] for e in result] == ["Registered"]


@case("recent_views", lambda h: h.ext.recent_views(USER))
def _(h: Host, result: t.Any) -> None:
    assert [v["kind"] for v in result] == ["page"]


@case("prune_events", lambda h: h.ext.prune_events(30))
def _(h: Host, result: t.Any) -> None:
    assert (result["events"], result["views"]) == (1, 1)
    with h.app.app_context():
        assert h.ext.recent_events(USER) == [] and h.ext.recent_views(USER) == []


@case("is_member", lambda h: h.ext.is_member(USER, h.segment))
def _(h: Host, result: t.Any) -> None:
    assert result is True


@case("segment_count", lambda h: h.ext.segment_count(h.segment.id))
def _(h: Host, result: t.Any) -> None:
    assert result == 1


@case("segment_members", lambda h: h.ext.segment_members(h.segment))
def _(h: Host, result: t.Any) -> None:
    assert result == [USER]


@case("segment_query", lambda h: h.ext.segment_query(PREMIUM))
def _(h: Host, result: t.Any) -> None:
    with h.app.app_context(), h.db.engine.connect() as conn:
        assert conn.execute(result).scalars().all() == [USER]


@case("create_segment", lambda h: h.ext.create_segment("Made", PREMIUM))
def _(h: Host, result: t.Any) -> None:
    with h.app.app_context():
        assert h.ext.get_segment_by_name("Made") == result


@case("get_segment", lambda h: h.ext.get_segment(h.segment.id))
def _(h: Host, result: t.Any) -> None:
    assert result == h.segment


@case("get_segment_by_name", lambda h: h.ext.get_segment_by_name("Premium"))
def _(h: Host, result: t.Any) -> None:
    assert result == h.segment


@case("list_segments", lambda h: h.ext.list_segments())
def _(h: Host, result: t.Any) -> None:
    assert result == [h.segment]


@case("update_segment", lambda h: h.ext.update_segment(h.segment.id, name="Renamed"))
def _(h: Host, result: t.Any) -> None:
    with h.app.app_context():
        assert h.ext.get_segment(h.segment.id).name == "Renamed"


@case("delete_segment", lambda h: h.ext.delete_segment(h.segment.id))
def _(h: Host, result: t.Any) -> None:
    assert result is True
    with h.app.app_context():
        assert h.ext.list_segments() == []


def _profile(h: Host) -> t.Any:
    with pytest.warns(DeprecationWarning, match="get_profile"):
        return h.ext.profile(USER)


@case("profile (deprecated)", _profile)
def _(h: Host, result: t.Any) -> None:
    assert result["user_id"] == USER


@case("current_workspace", lambda h: h.ext.current_workspace())
def _(h: Host, result: t.Any) -> None:
    assert result == "default"


@case("is_allowed", lambda h: h.ext.is_allowed())
def _(h: Host, result: t.Any) -> None:
    assert result is True


def _signal(h: Host) -> None:
    hostapp.survey_completed.send(h.app, **completion(3))


@case("survey_completed signal", _signal)
def _(h: Host, result: t.Any) -> None:
    # It joined the host's transaction: rolled back with it, nothing pending.
    assert nonzero_counts(h) == {"failed": 1, "sending": 1}


@case("forget_user", lambda h: h.ext.forget_user(USER))
def _(h: Host, result: t.Any) -> None:
    assert result["profiles"] == 1 and result["traits"] >= 1
    with h.app.app_context():
        assert h.ext.get_profile(USER) is None  # erased, and kept erased


def _shown(h: Host) -> None:
    state = h.app.extensions["refiner_segment"]
    workspaces.update(state, "default", {"lifecycle_events": True})
    outbound_settings.invalidate(state)
    hostapp.survey_shown.send(h.app, user_id="u-1", survey="nps-2026")


@case("survey_shown signal", _shown)
def _(h: Host, result: t.Any) -> None:
    # It joined the host's transaction: rolled back with it, nothing pending.
    assert nonzero_counts(h) == {"failed": 1, "sending": 1}


def test_every_public_method_has_a_case():
    from flask_refiner_segment import RefinerSegment

    public = {
        name
        for name in vars(RefinerSegment)
        if not name.startswith("_") and callable(getattr(RefinerSegment, name))
    }
    hooks_and_setup = {
        "init_app",
        "settings_guard",
        "workspace_loader",
        "completion_source",
    }
    assert public - hooks_and_setup == set(CASES) - {
        "profile (deprecated)",
        "survey_completed signal",
        "survey_shown signal",
    }
    assert "profile" in vars(RefinerSegment)  # the deprecated property


@pytest.mark.parametrize("name", list(CASES))
def test_method_leaves_the_hosts_session_alone(host: Host, name: str) -> None:
    call, check = CASES[name]
    with host.app.test_request_context():
        note = host.new_note()
        result = call(host)
        assert note in host.db.session.new, "the host's pending object is gone"
        assert host.stored(note) == 0, "the host's object was committed"
        host.db.session.rollback()
        assert note not in host.db.session
        assert host.stored(note) == 0
    check(host, result)
