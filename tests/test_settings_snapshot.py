"""flask_refiner_segment.outbound.settings: on the request path, the settings
of many workspaces come from one query (the process's snapshot of every stored
workspace), and what the snapshot cannot vouch for is read on its own."""

from __future__ import annotations

import contextlib
import typing as t

import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment import state as state_module
from flask_refiner_segment.outbound import settings

from .test_settings import load
from .test_settings import state_of
from .test_settings import store
from .test_settings import store_key


@contextlib.contextmanager
def workspace_reads(app: Flask) -> t.Iterator[list[str]]:
    """The statements that read the workspace table while in the block."""
    seen: list[str] = []

    def before(conn: t.Any, cursor: t.Any, statement: str, *args: t.Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and (
            "refiner_segment_workspace" in statement
        ):
            seen.append(statement)

    with app.app_context():
        engine = state_of(app).db.engine
    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)


def cached_app(make_app: t.Callable[..., Flask], seconds: float = 3600) -> Flask:
    return make_app(
        REFINER_SEGMENT_WRITE_KEY=None, REFINER_SEGMENT_SETTINGS_CACHE_SECONDS=seconds
    )


def test_many_workspaces_are_read_in_one_query(make_app):
    app = cached_app(make_app)
    ids = [f"ws-{i}" for i in range(50)]
    for n, ws in enumerate(ids):
        store_key(app, ws, key=f"wk_{n}_key", track_event=f"Event {n}")
    with workspace_reads(app) as reads:
        found = [load(app, ws) for ws in ids]
    assert len(reads) == 1
    assert [s.track_event for s in found] == [f"Event {n}" for n in range(50)]
    assert [s.write_key for s in found] == [f"wk_{n}_key" for n in range(50)]


def test_a_workspace_the_snapshot_cannot_vouch_for_is_read_on_its_own(make_app):
    """Missing from the snapshot, or unable to send by it: a key saved since
    (by another process) is seen at once."""
    one, two = cached_app(make_app), cached_app(make_app)
    store_key(one, "ws-a")
    store(one, "ws-b", track_event="No key yet")
    assert load(one, "ws-a").sendable  # the snapshot is taken
    store_key(two, "ws-b")
    store_key(two, "ws-c")
    with workspace_reads(one) as reads:
        assert load(one, "ws-b").sendable
        assert load(one, "ws-c").sendable
    assert len(reads) == 2


class Clock:
    """``time.monotonic`` that moves only when told (the cache's and the
    snapshot's clock), so that a slow machine cannot expire them early."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_a_change_elsewhere_is_seen_within_the_cache_seconds(make_app, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(settings, "time", clock)
    monkeypatch.setattr(state_module, "time", clock)
    one, two = cached_app(make_app, seconds=5), cached_app(make_app)
    store_key(one, "ws-a")
    store_key(one, "ws-b")
    assert load(one, "ws-a").enabled
    store(two, "ws-a", enabled=False)
    store(two, "ws-b", track_event="Changed")
    clock.now += 4.9
    assert load(one, "ws-a").enabled  # cached
    assert load(one, "ws-b").track_event != "Changed"  # the snapshot, before it
    clock.now += 0.2
    assert not load(one, "ws-a").enabled
    assert load(one, "ws-b").track_event == "Changed"


def test_a_change_in_this_process_is_seen_at_once(make_app):
    app = cached_app(make_app)
    store_key(app, "ws-a")
    assert load(app, "ws-a").region == "us"
    with app.app_context():
        settings.save(state_of(app), "ws-a", region="eu")
    assert load(app, "ws-a").region == "eu"


def test_more_workspaces_than_the_snapshot_holds_are_read_one_by_one(
    make_app, monkeypatch
):
    monkeypatch.setattr(settings, "SNAPSHOT_MAX", 3)
    app = cached_app(make_app)
    ids = [f"ws-{i}" for i in range(5)]
    for ws in ids:
        store_key(app, ws, track_event=ws)
    with workspace_reads(app) as reads:
        assert [load(app, ws).track_event for ws in ids] == ids
    assert len(reads) == 1 + 5  # the snapshot gives up, then one each
