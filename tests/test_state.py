"""flask_refiner_segment.state: the per-app State, its per-process objects and
TTLCache.

get_state outside an app context and on an app without init_app:
test_extension.py (test_state_needs_app_context, test_unregistered_app_is_named).
"""

from __future__ import annotations

import os
import pickle
import time
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from flask_refiner_segment import RefinerSegment
from flask_refiner_segment.config import library_version
from flask_refiner_segment.state import EXTENSION_KEY
from flask_refiner_segment.state import State
from flask_refiner_segment.state import TTLCache
from flask_refiner_segment.state import get_state
from flask_sqlalchemy import SQLAlchemy


def make(tmp_path: Path, name: str = "app", **config: t.Any) -> Flask:
    """An app on SQLite with no Redis (nothing here talks to it)."""
    app = Flask(name)
    app.config.update(
        SECRET_KEY="s",
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / name}.db",
        REFINER_SEGMENT_REDIS_URL="redis://127.0.0.1:1/0",
        **config,
    )
    RefinerSegment(app, db=SQLAlchemy(app))
    return app


def test_get_state_is_the_state_of_the_current_app(tmp_path):
    one = make(tmp_path, "one")
    two = make(tmp_path, "two")
    with one.app_context():
        state = get_state()
        assert state is one.extensions[EXTENSION_KEY]
        with two.app_context():
            assert get_state() is two.extensions[EXTENSION_KEY]
        assert get_state() is state
    assert isinstance(state, State)
    assert state.version == library_version()


def test_workspace_defaults_to_the_configured_default(tmp_path):
    state = make(tmp_path, REFINER_SEGMENT_DEFAULT_WORKSPACE="main").extensions[
        EXTENSION_KEY
    ]
    assert state.workspace(None) == "main"
    assert state.workspace("") == "main"
    assert state.workspace("acme") == "acme"
    assert state.workspace(42) == "42"  # type: ignore[arg-type]


def test_current_workspace_and_guard_come_from_the_hosts_hooks(tmp_path):
    app = make(tmp_path)
    state = app.extensions[EXTENSION_KEY]
    ext = state.owner
    with app.test_request_context():
        assert state.current_workspace() == "default"
        assert state.is_allowed() is False  # no guard: denied
        ext.workspace_loader(lambda: "tenant-7")
        ext.settings_guard(lambda: 1)
        assert state.current_workspace() == "tenant-7"
        assert state.is_allowed() is True


def test_ttl_cache_keeps_an_entry_for_its_ttl():
    cache: TTLCache[int] = TTLCache(ttl=3600)
    assert cache.get("a") is None
    cache.put("a", 1)
    cache.put("b", 2)
    assert (cache.get("a"), cache.get("b")) == (1, 2)
    cache.put("a", 3)
    assert cache.get("a") == 3
    cache.pop("a")
    cache.pop("missing")
    assert (cache.get("a"), cache.get("b")) == (None, 2)
    cache.clear()
    assert cache.get("b") is None


def test_ttl_cache_entries_expire():
    ttl = 0.05
    cache: TTLCache[str] = TTLCache(ttl=ttl)
    cache.put("a", "x")
    put_done = time.monotonic()
    deadline = put_done + 30
    while time.monotonic() <= put_done + ttl:  # wait for the clock, not a guess
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert cache.get("a") is None


@pytest.mark.parametrize("ttl", [0, -1])
def test_ttl_cache_with_no_ttl_keeps_nothing(ttl):
    cache: TTLCache[int] = TTLCache(ttl=ttl)
    cache.put("a", 1)
    assert cache.get("a") is None


def test_ttl_cache_holds_at_most_max_entries():
    cache: TTLCache[int] = TTLCache(ttl=3600, max_entries=3)
    for n, key in enumerate("abc"):
        cache.put(key, n)
    assert [cache.get(k) for k in "abc"] == [0, 1, 2]  # up to the limit: all kept
    keys = [f"k{n}" for n in range(50)]
    for n, key in enumerate(keys):
        cache.put(key, n)
        held = [k for k in [*"abc", *keys] if cache.get(k) is not None]
        assert len(held) <= 3
        assert cache.get(key) == n  # the newest entry is always kept


def test_local_is_built_once_per_process_and_key(tmp_path):
    state = make(tmp_path).extensions[EXTENSION_KEY]
    built: list[str] = []

    def factory(name: str) -> t.Callable[[], dict[str, str]]:
        def build() -> dict[str, str]:
            built.append(name)
            return {"name": name}

        return build

    first = state.local("k", factory("first"))
    assert state.local("k", factory("second")) is first
    other = state.local("other", factory("other"))
    assert other is not first
    assert built == ["first", "other"]
    # Another app's state has its own.
    assert make(tmp_path, "two").extensions[EXTENSION_KEY].local(
        "k", factory("two")
    ) == {"name": "two"}


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_local_is_not_shared_with_a_forked_child(tmp_path):
    state = make(tmp_path).extensions[EXTENSION_KEY]
    parent_obj = state.local("conn", lambda: {"pid": os.getpid()})
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running pytest's code
        try:
            child_obj = state.local("conn", lambda: {"pid": os.getpid()})
            again = state.local("conn", lambda: {"pid": -1})
            report = {
                "shared": child_obj is parent_obj,
                "built_in": child_obj["pid"],
                "me": os.getpid(),
                "stable": again is child_obj,
            }
            os.write(write, pickle.dumps(report))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    report = pickle.loads(data)
    assert report["shared"] is False
    assert report["built_in"] == report["me"] != os.getpid()
    assert report["stable"] is True
    # The parent still has its own.
    assert state.local("conn", lambda: {"pid": -2}) is parent_obj


def test_job_app_outside_the_app_context_says_how_to_run_jobs(app):
    from flask_refiner_segment.state import job_app

    with pytest.raises(RuntimeError, match="flask refiner-segment worker"):
        job_app()
    with app.app_context():
        assert job_app() is app
