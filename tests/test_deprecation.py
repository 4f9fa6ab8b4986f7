"""The 0.1 names deprecated in 0.2: each warns with DeprecationWarning naming its
replacement, and gives what the replacement gives; the 0.1 job paths still run."""

from __future__ import annotations

import importlib
import re
import typing as t
import warnings

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment import SavedSegment
from flask_refiner_segment.inbound import queries
from flask_refiner_segment.outbound import jobs as new_jobs
from flask_refiner_segment.outbound import kick
from rq import Queue

from .conftest import run_worker
from .conftest import send_completion
from .helpers import statuses
from .inbound_support import OLD
from .inbound_support import close_app
from .inbound_support import make_app
from .inbound_support import page
from .inbound_support import post
from .inbound_support import seed_inbound
from .inbound_support import track

USER = "97980cfea0067"
GROUP = "0e8c78ea9d97a7b8185e8632"
PREMIUM = {
    "match": "all",
    "conditions": [{"kind": "trait", "key": "plan", "op": "eq", "value": "premium"}],
}


@pytest.fixture
def dep_app(database_url: str) -> t.Iterator[Flask]:
    """A host app with inbound data: two profiles, an account, an event, a view."""
    app = make_app(database_url)
    seed_inbound(app)
    yield app
    close_app(app)


def ext_of(app: Flask) -> t.Any:
    return app.extensions["refiner_segment"].owner


def old_name(module: str, name: str, replacement: str) -> t.Any:
    """``module.name``, checking that getting it warns once, naming ``replacement``."""
    mod = importlib.import_module(module)
    pattern = (
        rf"'{re.escape(module)}\.{name}' is deprecated.*"
        rf"Use '{re.escape(replacement)}'"
    )
    with pytest.warns(DeprecationWarning, match=pattern) as record:
        value = getattr(mod, name)
    assert len(record) == 1
    return value


SEGMENT_ALIASES = [
    ("count", "refiner_segment.segment_count"),
    ("members", "refiner_segment.segment_members"),
    ("members_query", "refiner_segment.segment_query"),
    ("is_member", "refiner_segment.is_member"),
    ("create_segment", "refiner_segment.create_segment"),
    ("get_segment", "refiner_segment.get_segment"),
    ("list_segments", "refiner_segment.list_segments"),
    ("update_segment", "refiner_segment.update_segment"),
    ("delete_segment", "refiner_segment.delete_segment"),
]
INBOUND_ALIASES = [
    ("get_profile", "refiner_segment.get_profile"),
    ("get_account", "refiner_segment.get_account"),
    ("recent_events", "refiner_segment.recent_events"),
    ("recent_views", "refiner_segment.recent_views"),
    ("prune", "refiner_segment.prune_events"),
]
SEGMENTS_API = "flask_refiner_segment.segments.api"
INBOUND = "flask_refiner_segment.inbound"


def test_segments_api_count_members_and_query(dep_app):
    ext = ext_of(dep_app)
    with dep_app.app_context():
        saved = ext.create_segment("Premium", PREMIUM)
        count = old_name(SEGMENTS_API, "count", "refiner_segment.segment_count")
        assert count(saved) == ext.segment_count(saved) == 1
        assert count(PREMIUM) == ext.segment_count(PREMIUM) == 1
        members = old_name(SEGMENTS_API, "members", "refiner_segment.segment_members")
        assert members(saved.id) == ext.segment_members(saved.id) == [USER]
        assert members(PREMIUM, 2, 1) == ext.segment_members(PREMIUM, 2, 1) == []
        is_member = old_name(SEGMENTS_API, "is_member", "refiner_segment.is_member")
        assert is_member(USER, saved) is ext.is_member(USER, saved) is True
        assert is_member("u-2", saved) is ext.is_member("u-2", saved) is False
        members_query = old_name(
            SEGMENTS_API, "members_query", "refiner_segment.segment_query"
        )
        # The old argument order: (workspace_id, rules).
        old_q = members_query("default", PREMIUM)
        new_q = ext.segment_query(PREMIUM, "default")
        assert isinstance(old_q, sa.Select)
        assert str(old_q) == str(new_q)
        with dep_app.extensions["test_db"].engine.connect() as conn:
            assert conn.execute(old_q).scalars().all() == [USER]
            assert conn.execute(new_q).scalars().all() == [USER]


def test_segments_api_crud(dep_app):
    ext = ext_of(dep_app)
    with dep_app.app_context():
        create = old_name(
            SEGMENTS_API, "create_segment", "refiner_segment.create_segment"
        )
        old = create("Old", PREMIUM)
        new = ext.create_segment("New", PREMIUM)
        assert isinstance(old, SavedSegment) and isinstance(new, SavedSegment)
        assert (old.workspace_id, old.rules) == (new.workspace_id, new.rules)
        get = old_name(SEGMENTS_API, "get_segment", "refiner_segment.get_segment")
        assert get(old.id) == ext.get_segment(old.id) == old
        assert get(10**6) is ext.get_segment(10**6) is None
        listing = old_name(
            SEGMENTS_API, "list_segments", "refiner_segment.list_segments"
        )
        assert listing() == ext.list_segments() == [new, old]  # by name
        update = old_name(
            SEGMENTS_API, "update_segment", "refiner_segment.update_segment"
        )
        renamed = update(old.id, name="Older")
        assert renamed.name == "Older"
        assert ext.get_segment(old.id) == renamed
        assert ext.update_segment(old.id, name="Oldest").name == "Oldest"
        delete = old_name(
            SEGMENTS_API, "delete_segment", "refiner_segment.delete_segment"
        )
        assert delete(old.id) is True
        assert delete(old.id) is ext.delete_segment(old.id) is False
        assert ext.delete_segment(new.id) is True
        assert ext.list_segments() == []


def test_segments_api_old_names_are_the_new_functions(dep_app):
    ext = ext_of(dep_app)
    for name, _ in SEGMENT_ALIASES:
        if name in ("count", "members", "members_query"):
            continue  # renamed: checked by their results above
        with pytest.warns(DeprecationWarning):
            old = getattr(importlib.import_module(SEGMENTS_API), name)
        assert old is getattr(ext, name)


def test_segments_api_unknown_name_is_an_attribute_error():
    from flask_refiner_segment.segments import api

    with pytest.raises(AttributeError, match="no_such_thing"):
        api.no_such_thing  # noqa: B018


def test_inbound_queries(dep_app):
    ext = ext_of(dep_app)
    with dep_app.app_context():
        get_profile = old_name(INBOUND, "get_profile", "refiner_segment.get_profile")
        profile = get_profile(USER)
        assert profile is not None and profile["traits"]["plan"] == "premium"
        assert profile == ext.get_profile(USER)
        assert get_profile("nobody") is ext.get_profile("nobody") is None
        get_account = old_name(INBOUND, "get_account", "refiner_segment.get_account")
        account = get_account(GROUP)
        assert account is not None and account["user_ids"] == [USER]
        assert account == ext.get_account(GROUP)
        recent_events = old_name(
            INBOUND, "recent_events", "refiner_segment.recent_events"
        )
        events = recent_events(USER)
        assert [e["name"] for e in events] == ["Registered"]
        assert events == ext.recent_events(USER)
        recent_views = old_name(INBOUND, "recent_views", "refiner_segment.recent_views")
        views = recent_views(USER, 10)
        assert [v["kind"] for v in views] == ["page"]
        assert views == ext.recent_views(USER, 10)


def test_inbound_prune(dep_app):
    ext = ext_of(dep_app)
    with dep_app.app_context():
        prune = old_name(INBOUND, "prune", "refiner_segment.prune_events")
        old = prune(older_than_days=1)
        assert old["events"] == 1 and old["views"] == 1
    # The same data again (new message ids), for the new name.
    again = [track("ajs-track-2", at=OLD), page("ajs-page-2", at=OLD)]
    assert post(dep_app, {"batch": again}).json["stored"] == 2
    with dep_app.app_context():
        assert ext.prune_events(1) == old
        assert ext.recent_events(USER) == []


def test_inbound_old_names_are_the_new_functions(dep_app):
    ext = ext_of(dep_app)
    for name, _ in INBOUND_ALIASES:
        with pytest.warns(DeprecationWarning):
            old = getattr(importlib.import_module(INBOUND), name)
        assert old is getattr(queries, name)
        if name != "prune":
            assert old is getattr(ext, name)


def test_module_aliases_warn_at_the_callers_line():
    """The warning points at the code that used the old name, not at the
    library: Python's default filters show a DeprecationWarning only when it is
    attributed to ``__main__``, and ``-W error::DeprecationWarning:myapp``
    filters by the module it is attributed to."""
    misattributed = []
    for module, aliases in (
        (SEGMENTS_API, SEGMENT_ALIASES),
        (INBOUND, INBOUND_ALIASES),
    ):
        mod = importlib.import_module(module)
        for name, replacement in aliases:
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always")
                getattr(mod, name)  # this line
            (warning,) = record
            assert warning.category is DeprecationWarning
            assert replacement in str(warning.message)
            if warning.filename != __file__:
                where = f"{warning.filename}:{warning.lineno}"
                misattributed.append(f"{module}.{name} -> {where}")
    assert misattributed == []


def test_refiner_segment_profile(dep_app):
    ext = ext_of(dep_app)
    with dep_app.app_context():
        with pytest.warns(
            DeprecationWarning,
            match=r"'RefinerSegment\.profile' is deprecated.*"
            r"Use 'RefinerSegment\.get_profile'",
        ) as record:
            profile = ext.profile
        assert record[0].filename == __file__  # the caller's line
        assert profile(USER) == ext.get_profile(USER)
        assert profile(USER)["traits"]["plan"] == "premium"


@pytest.mark.parametrize("name", ["deliver", "record_completion", "sweep"])
def test_old_job_paths_are_importable_and_are_the_new_jobs(name):
    module = importlib.import_module("flask_refiner_segment.jobs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = getattr(module, name)
    assert old is getattr(new_jobs, name)


def test_old_job_paths_warn_naming_the_new_path():
    """CHANGES.md lists ``flask_refiner_segment.jobs`` among the deprecated
    names that warn with DeprecationWarning."""
    module = importlib.import_module("flask_refiner_segment.jobs")
    for name in ("deliver", "record_completion", "sweep"):
        with pytest.warns(
            DeprecationWarning,
            match=re.escape(f"flask_refiner_segment.outbound.jobs.{name}"),
        ):
            getattr(module, name)


def test_a_job_queued_by_0_1_still_runs(app, segment, redis_url, redis_conn):
    """A drain job queued under the 0.1 dotted path is run by a worker."""
    state = app.extensions["refiner_segment"]
    send_completion(app, 1)
    queue = Queue(state.config.queue, connection=redis_conn)
    queue.empty()  # drop the job the completion queued: only the old one runs
    redis_conn.delete(kick.kick_key("default"))
    job = queue.enqueue("flask_refiner_segment.jobs.deliver", "default")
    run_worker(app, redis_url)
    job.refresh()
    assert job.is_finished, job.latest_result()
    assert statuses(app) == {"sent": 1}
    assert len(segment.messages) == 3
