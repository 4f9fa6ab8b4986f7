"""flask_refiner_segment.config: defaults, the Redis URL fallbacks, coercion and
checks of ``read_config``; the library version.

Through ``init_app``: test_extension.py.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata

import pytest
from flask import Flask
from flask_refiner_segment import config as config_module
from flask_refiner_segment.config import DEFAULTS
from flask_refiner_segment.config import PREFIX
from flask_refiner_segment.config import Config
from flask_refiner_segment.config import library_version
from flask_refiner_segment.config import read_config


def make_app(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(config)
    return app


def test_every_default_is_recorded_in_app_config():
    app = make_app()
    read_config(app)
    for key, value in DEFAULTS.items():
        assert app.config[PREFIX + key] == value, key


def test_host_values_are_kept_and_read():
    app = make_app(
        REFINER_SEGMENT_QUEUE="host-queue",
        REFINER_SEGMENT_BATCH_SIZE=10,
        REFINER_SEGMENT_WRITE_KEY="wk",
        SECRET_KEY="s3cret",
    )
    config = read_config(app)
    assert app.config["REFINER_SEGMENT_QUEUE"] == "host-queue"
    assert (config.queue, config.batch_size, config.write_key) == (
        "host-queue",
        10,
        "wk",
    )
    assert config.secret_key == "s3cret"
    assert config.track_event == DEFAULTS["TRACK_EVENT"]


def test_every_key_is_a_field_and_the_config_is_frozen():
    fields = {f.name for f in dataclasses.fields(Config)}
    assert fields == {key.lower() for key in DEFAULTS} | {"secret_key"}
    config = read_config(make_app())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.queue = "other"  # type: ignore[misc]


def test_no_secret_key_is_none():
    assert read_config(make_app()).secret_key is None
    assert read_config(make_app(SECRET_KEY="")).secret_key is None


def test_redis_url_config_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://env-host:6379/1")
    app = make_app(REFINER_SEGMENT_REDIS_URL="redis://config-host:6379/2")
    assert read_config(app).redis_url == "redis://config-host:6379/2"


def test_redis_url_falls_back_to_the_environment(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://env-host:6379/1")
    app = make_app()
    assert read_config(app).redis_url == "redis://env-host:6379/1"
    assert app.config["REFINER_SEGMENT_REDIS_URL"] is None  # recorded as set


@pytest.mark.parametrize("env", [None, ""])
def test_redis_url_falls_back_to_localhost(monkeypatch, env):
    if env is None:
        monkeypatch.delenv("REDIS_URL", raising=False)
    else:
        monkeypatch.setenv("REDIS_URL", env)
    assert read_config(make_app()).redis_url == "redis://localhost:6379/0"
    empty = make_app(REFINER_SEGMENT_REDIS_URL="")
    assert read_config(empty).redis_url == "redis://localhost:6379/0"


@pytest.mark.parametrize("prefix", ["", "segment", "/segment/", "/", "segment/"])
def test_a_bad_url_prefix_is_an_error(prefix):
    with pytest.raises(RuntimeError, match="URL_PREFIX must start with '/'") as info:
        read_config(make_app(REFINER_SEGMENT_URL_PREFIX=prefix))
    assert repr(prefix) in str(info.value)


@pytest.mark.parametrize("prefix", ["/segment", "/admin/integrations/segment"])
def test_a_good_url_prefix(prefix):
    assert read_config(make_app(REFINER_SEGMENT_URL_PREFIX=prefix)).url_prefix == prefix


@pytest.mark.parametrize(
    "value, expected",
    [
        ((5, 30, 120), (5, 30, 120)),
        ([1, 2], (1, 2)),
        (["3", "4"], (3, 4)),  # from the environment, as strings
        ([2.9], (2,)),
        ([], (1,)),  # no retries configured: one retry after a second
        ((), (1,)),
    ],
)
def test_job_retry_intervals_are_a_tuple_of_ints(value, expected):
    app = make_app(REFINER_SEGMENT_JOB_RETRY_INTERVALS=value)
    intervals = read_config(app).job_retry_intervals
    assert intervals == expected
    assert isinstance(intervals, tuple)
    assert all(type(i) is int for i in intervals)


def test_job_retry_intervals_that_are_not_numbers_fail():
    with pytest.raises(ValueError):
        read_config(make_app(REFINER_SEGMENT_JOB_RETRY_INTERVALS=["soon"]))


def test_library_version_is_the_installed_distributions():
    assert library_version() == importlib.metadata.version("flask-refiner-segment")


def test_library_version_without_the_distribution(monkeypatch):
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    library_version.cache_clear()
    monkeypatch.setattr(config_module.importlib.metadata, "version", missing)
    try:
        assert library_version() == "0.0.0"
    finally:
        library_version.cache_clear()
