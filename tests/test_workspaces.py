"""flask_refiner_segment.workspaces: the stored row of each workspace, on
SQLite and PostgreSQL."""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment import workspaces


def state_of(app: Flask) -> t.Any:
    return app.extensions["refiner_segment"]


def table_of(app: Flask) -> sa.Table:
    return state_of(app).tables.outbound.Workspace.__table__


def all_rows(app: Flask) -> list[t.Any]:
    with app.app_context(), state_of(app).db.engine.connect() as conn:
        return list(conn.execute(sa.select(table_of(app)).order_by("id")))


def test_stored_is_none_for_an_unknown_workspace(app):
    with app.app_context():
        assert workspaces.stored(state_of(app), "nobody") is None


def test_update_creates_the_row_then_updates_it(app):
    state = state_of(app)
    with app.app_context():
        workspaces.update(state, "ws-a", {"track_event": "Done", "surveys": ["s1"]})
        created = workspaces.stored(state, "ws-a")
        assert created.workspace_id == "ws-a"
        assert (created.enabled, created.region) == (True, "us")  # defaults
        assert (created.track_event, created.surveys) == ("Done", ["s1"])
        assert created.updated_at is not None
        workspaces.update(state, "ws-a", {"region": "eu", "enabled": False})
        updated = workspaces.stored(state, "ws-a")
    assert (updated.region, updated.enabled) == ("eu", False)
    # What was not named is kept.
    assert (updated.track_event, updated.surveys) == ("Done", ["s1"])
    assert updated.id == created.id
    assert updated.updated_at >= created.updated_at
    assert len(all_rows(app)) == 1


def test_update_of_a_new_row_may_set_the_defaults(app):
    state = state_of(app)
    with app.app_context():
        workspaces.update(state, "ws-a", {"enabled": False, "region": "eu"})
        row = workspaces.stored(state, "ws-a")
    assert (row.enabled, row.region) == (False, "eu")


def test_each_workspace_has_its_own_row(app):
    state = state_of(app)
    with app.app_context():
        workspaces.update(state, "ws-a", {"track_event": "A"})
        workspaces.update(state, "ws-b", {"track_event": "B"})
        workspaces.update(state, "ws-a", {"track_event": "A2"})
        assert workspaces.stored(state, "ws-a").track_event == "A2"
        assert workspaces.stored(state, "ws-b").track_event == "B"
    assert [r.workspace_id for r in all_rows(app)] == ["ws-a", "ws-b"]


def test_a_row_created_meanwhile_by_another_request_is_updated(app):
    """The race: the UPDATE finds no row, another request INSERTs it, then this
    INSERT hits the unique constraint; the values must still be stored.

    The other request runs on its own connection right before this INSERT is
    sent (an engine event), so the race happens every time."""
    state = state_of(app)
    table = table_of(app)
    with app.app_context():
        engine = state.db.engine
    raced: list[bool] = []

    def other_request(conn, cursor, statement, parameters, context, executemany):
        if raced or not statement.lstrip().upper().startswith("INSERT"):
            return
        if "refiner_segment_workspace" not in statement:
            return
        raced.append(True)
        with engine.begin() as other:
            other.execute(
                table.insert().values(
                    workspace_id="ws-a",
                    enabled=True,
                    region="eu",
                    track_event="From the other request",
                    updated_at=sa.func.now(),
                )
            )

    sa.event.listen(engine, "before_cursor_execute", other_request)
    try:
        with app.app_context():
            workspaces.update(
                state, "ws-a", {"track_event": "Mine", "trait_prefix": "p_"}
            )
    finally:
        sa.event.remove(engine, "before_cursor_execute", other_request)
    assert raced == [True]
    (row,) = all_rows(app)
    assert (row.workspace_id, row.track_event, row.trait_prefix) == (
        "ws-a",
        "Mine",
        "p_",
    )
    assert row.region == "eu"  # the other request's row, updated, not replaced


def test_never_touches_the_hosts_session(app):
    db = app.extensions["test_db"]
    state = state_of(app)
    with app.app_context():
        session = db.session()
        workspaces.update(state, "ws-a", {"track_event": "A"})
        workspaces.update(state, "ws-a", {"track_event": "B"})
        assert workspaces.stored(state, "ws-a").track_event == "B"
        # The host's session was never begun: no connection, no transaction.
        assert not session.in_transaction()
        assert session.get_transaction() is None
        assert db.session() is session
