"""The extension object: init_app, config, the default signal, models."""

from __future__ import annotations

import typing as t

import blinker
import pytest
from flask import Flask
from flask_refiner_segment import RefinerSegment
from flask_refiner_segment.state import get_state as _get_state
from flask_sqlalchemy import SQLAlchemy

from .conftest import completion


@pytest.fixture
def opened() -> t.Iterator[list[tuple[Flask, SQLAlchemy]]]:
    """Apps whose database engine the test opened; disposed at teardown.

    An engine left to the garbage collector closes its SQLite connections
    unclosed (a ResourceWarning on Python 3.13, an error here) in whatever
    test happens to run then.
    """
    apps: list[tuple[Flask, SQLAlchemy]] = []
    yield apps
    for app, db in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def make(tmp_path, opened):
    def make(**kwargs):
        app = Flask(__name__)
        app.config.update(
            SECRET_KEY="s",
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'x.db'}",
            REFINER_SEGMENT_REDIS_URL="redis://127.0.0.1:1/0",
            REFINER_SEGMENT_WRITE_KEY="wk",
        )
        db = SQLAlchemy(app)
        opened.append((app, db))
        ext = RefinerSegment(app, db=db, **kwargs)
        with app.app_context():
            db.create_all()
        return app, db, ext

    return make


def test_init_app_twice_raises(make):
    app, db, ext = make()
    with pytest.raises(RuntimeError, match="already been registered"):
        ext.init_app(app)


def test_defaults_recorded_in_config(make):
    app, _, _ = make()
    assert app.config["REFINER_SEGMENT_QUEUE"] == "refiner_segment"
    assert app.config["REFINER_SEGMENT_TRAIT_PREFIX"] == "refiner_"
    assert app.config["REFINER_SEGMENT_URL_PREFIX"] == "/integrations/segment"


def test_bad_url_prefix_fails_in_init_app(tmp_path):
    app = Flask(__name__)
    app.config.update(SECRET_KEY="s", REFINER_SEGMENT_URL_PREFIX="segment/")
    db = SQLAlchemy()
    with pytest.raises(RuntimeError, match="URL_PREFIX"):
        RefinerSegment(app, db=db)


def test_no_secret_fails_clearly(tmp_path):
    app = Flask(__name__)
    db = SQLAlchemy()
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        RefinerSegment(app, db=db)


def test_default_signal_is_blinkers_default_namespace(make):
    app, db, ext = make()
    assert ext.signal is blinker.signal("survey_completed")
    with app.test_request_context():
        blinker.signal("survey_completed").send(app, **completion(1))
    with app.app_context():
        assert ext.status_counts()["pending"] == 1  # Redis is down: still recorded


def test_state_needs_app_context():
    with pytest.raises(RuntimeError, match="application context"):
        _get_state()


def test_unregistered_app_is_named(tmp_path):
    app = Flask(__name__)
    with app.app_context(), pytest.raises(RuntimeError, match="init_app"):
        _get_state()


def test_two_apps_one_extension(tmp_path, opened):
    db = SQLAlchemy()
    ext = RefinerSegment(db=db)
    apps = []
    for name in ("a", "b"):
        app = Flask(name)
        app.config.update(
            SECRET_KEY=name,
            SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / name}.db",
            REFINER_SEGMENT_REDIS_URL="redis://127.0.0.1:1/0",
            REFINER_SEGMENT_TRACK_EVENT=f"Done {name}",
            REFINER_SEGMENT_WRITE_KEY="wk",
        )
        db.init_app(app)
        opened.append((app, db))
        ext.init_app(app)
        with app.app_context():
            db.create_all()
        apps.append(app)
    for app in apps:
        with app.app_context():
            assert ext.settings().track_event == f"Done {app.name}"
    with apps[0].test_request_context():
        blinker.signal("survey_completed").send(apps[0], **completion(1))
    counts = []
    for app in apps:
        with app.app_context():
            counts.append(ext.status_counts()["pending"])
    assert counts == [1, 0]
