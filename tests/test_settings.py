"""flask_refiner_segment.outbound.settings: the effective settings of a
workspace (stored row, app config overrides), their cache, and the pause.

The settings page that edits them: test_views_settings.py; a changed
SECRET_KEY through the extension's ``settings()``: test_secrets.py.
"""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from flask_refiner_segment import workspaces
from flask_refiner_segment.core.urls import EU_HOST
from flask_refiner_segment.core.urls import US_HOST
from flask_refiner_segment.outbound import settings
from flask_refiner_segment.outbound.settings import WorkspaceSettings

KEY = "wk_stored_key_0c7d"


def state_of(app: Flask) -> t.Any:
    return app.extensions["refiner_segment"]


def store(app: Flask, workspace_id: str, **values: t.Any) -> None:
    with app.app_context():
        workspaces.update(state_of(app), workspace_id, values)


def store_key(app: Flask, workspace_id: str, key: str = KEY, **values: t.Any) -> None:
    with app.app_context():
        state = state_of(app)
        workspaces.update(
            state,
            workspace_id,
            {**settings.write_key_values(state, key), **values},
        )


def load(app: Flask, workspace_id: str, **kw: t.Any) -> WorkspaceSettings:
    with app.app_context():
        return settings.load(state_of(app), workspace_id, **kw)


@pytest.fixture
def bare_app(make_app: t.Callable[..., Flask]) -> Flask:
    """Nothing in app config: every value comes from the stored row."""
    return make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        REFINER_SEGMENT_TRACK_EVENT="Config Event",
        REFINER_SEGMENT_TRAIT_PREFIX="cfg_",
    )


def test_no_stored_row_gives_the_defaults(bare_app):
    s = load(bare_app, "ws-a")
    assert s.workspace_id == "ws-a"
    assert s.enabled is True
    assert s.write_key is None and s.write_key_source is None
    assert (s.region, s.custom_api_host, s.api_host) == ("us", None, US_HOST)
    assert s.api_host_from_config is False
    assert (s.track_event, s.trait_prefix) == ("Config Event", "cfg_")
    assert s.surveys is None
    assert s.paused is False and s.attention_reason is None and s.error is None
    assert s.sendable is False


def test_load_from_the_stored_row(bare_app):
    store_key(
        bare_app,
        "ws-a",
        region="eu",
        track_event="Stored Event",
        trait_prefix="",
        surveys=["s1", "s2"],
    )
    s = load(bare_app, "ws-a")
    assert (s.write_key, s.write_key_source) == (KEY, "stored")
    assert s.write_key_masked == "••••0c7d"
    assert KEY not in repr(s)
    assert (s.region, s.api_host) == ("eu", EU_HOST)
    assert s.track_event == "Stored Event"
    assert s.trait_prefix == ""  # stored empty: no prefix, not the config default
    assert s.surveys == frozenset({"s1", "s2"})
    assert s.sendable is True
    store(bare_app, "ws-a", region="custom", custom_api_host="https://dp.example/")
    s = load(bare_app, "ws-a", fresh=True)
    assert (s.custom_api_host, s.api_host) == (
        "https://dp.example/",
        "https://dp.example",
    )
    store(bare_app, "ws-a", track_event=None, trait_prefix=None)
    s = load(bare_app, "ws-a", fresh=True)
    assert (s.track_event, s.trait_prefix) == ("Config Event", "cfg_")


def test_app_config_overrides_the_default_workspace_only(make_app):
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY="wk_from_config_9a9a",
        REFINER_SEGMENT_API_HOST="https://config-host.example/",
    )
    for ws in ("default", "ws-a"):
        store_key(app, ws, region="eu")
    default = load(app, "default")
    assert (default.write_key, default.write_key_source) == (
        "wk_from_config_9a9a",
        "config",
    )
    assert default.api_host == "https://config-host.example"
    assert default.api_host_from_config is True
    assert default.region == "eu"  # stored, but the config host wins
    other = load(app, "ws-a")
    assert (other.write_key, other.write_key_source) == (KEY, "stored")
    assert (other.api_host, other.api_host_from_config) == (EU_HOST, False)


def test_load_is_cached_until_invalidated_or_fresh(make_app):
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None, REFINER_SEGMENT_SETTINGS_CACHE_SECONDS=3600
    )
    store(app, "ws-a", track_event="First")
    store(app, "ws-b", track_event="First")
    assert load(app, "ws-a").track_event == "First"
    assert load(app, "ws-b").track_event == "First"
    store(app, "ws-a", track_event="Second")
    store(app, "ws-b", track_event="Second")
    assert load(app, "ws-a").track_event == "First"  # cached
    assert load(app, "ws-a", fresh=True).track_event == "Second"
    assert load(app, "ws-a").track_event == "Second"  # fresh refilled the cache
    store(app, "ws-a", track_event="Third")
    with app.app_context():
        settings.invalidate(state_of(app), "ws-a")
    assert load(app, "ws-a").track_event == "Third"
    assert load(app, "ws-b").track_event == "First"  # only ws-a was forgotten
    with app.app_context():
        settings.invalidate(state_of(app))
    assert load(app, "ws-b").track_event == "Second"


def test_zero_cache_seconds_reads_every_time(make_app):
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None, REFINER_SEGMENT_SETTINGS_CACHE_SECONDS=0
    )
    store(app, "ws-a", track_event="First")
    assert load(app, "ws-a").track_event == "First"
    store(app, "ws-a", track_event="Second")
    assert load(app, "ws-a").track_event == "Second"


def test_the_cache_is_per_app(make_app):
    one = make_app(
        REFINER_SEGMENT_WRITE_KEY=None, REFINER_SEGMENT_SETTINGS_CACHE_SECONDS=3600
    )
    two = make_app(
        REFINER_SEGMENT_WRITE_KEY=None, REFINER_SEGMENT_SETTINGS_CACHE_SECONDS=3600
    )
    store(one, "ws-a", track_event="First")
    assert load(one, "ws-a").track_event == "First"
    store(one, "ws-a", track_event="Second")
    assert load(two, "ws-a").track_event == "Second"  # same database, own cache
    assert load(one, "ws-a").track_event == "First"


def make_settings(**values: t.Any) -> WorkspaceSettings:
    base: dict[str, t.Any] = {
        "workspace_id": "ws",
        "enabled": True,
        "write_key": "wk",
        "write_key_source": "stored",
        "write_key_masked": "••••",
        "region": "us",
        "custom_api_host": None,
        "api_host": US_HOST,
        "api_host_from_config": False,
        "track_event": "Survey Completed",
        "trait_prefix": "refiner_",
        "surveys": None,
        "paused": False,
        "attention_reason": None,
        "error": None,
    }
    return WorkspaceSettings(**{**base, **values})


@pytest.mark.parametrize(
    "values, survey_id, reason",
    [
        ({}, "any", None),
        ({}, None, None),
        ({"surveys": frozenset({"nps"})}, "nps", None),
        (
            {"surveys": frozenset({"nps"})},
            "other",
            "survey 'other' is not selected to send",
        ),
        ({"surveys": frozenset()}, "nps", "survey 'nps' is not selected to send"),
        ({"enabled": False}, "nps", "integration disabled"),
        ({"enabled": False, "write_key": None}, "nps", "integration disabled"),
        ({"write_key": None}, "nps", "no Segment write key configured"),
        ({"write_key": ""}, "nps", "no Segment write key configured"),
        ({"write_key": None, "error": "cannot decrypt"}, "nps", "cannot decrypt"),
    ],
)
def test_skip_reason(values, survey_id, reason):
    s = make_settings(**values)
    assert s.skip_reason(survey_id) == reason
    assert s.sendable is (s.enabled and bool(s.write_key))


def test_write_key_values_store_the_key_encrypted_and_lift_a_pause(bare_app):
    state = state_of(bare_app)
    with bare_app.app_context():
        values = settings.write_key_values(state, KEY)
    assert KEY not in repr(values)
    assert values["write_key_hint"] == "0c7d"
    assert values["rejected_key_fingerprint"] is None
    assert values["attention_reason"] is None and values["attention_at"] is None
    assert state.box.decrypt(values["write_key_encrypted"]) == KEY
    store_key(bare_app, "ws-a")
    with bare_app.app_context():
        settings.mark_rejected(state, "ws-a", KEY, "Segment answered 401")
    assert load(bare_app, "ws-a", fresh=True).paused is True
    store_key(bare_app, "ws-a", "wk_a_new_key_5e5e")
    s = load(bare_app, "ws-a", fresh=True)
    assert s.paused is False and s.attention_reason is None
    assert s.write_key == "wk_a_new_key_5e5e"


def test_mark_rejected_pauses_the_key_and_clear_rejected_lifts_it(make_app):
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None, REFINER_SEGMENT_SETTINGS_CACHE_SECONDS=3600
    )
    state = state_of(app)
    store_key(app, "ws-a")
    store_key(app, "ws-b")
    assert load(app, "ws-a").paused is False  # now cached
    with app.app_context():
        settings.mark_rejected(state, "ws-a", KEY, "Segment answered 401")
    s = load(app, "ws-a")  # the cache was invalidated
    assert s.paused is True
    assert s.attention_reason == "Segment answered 401"
    assert s.sendable is True  # completions are still recorded while paused
    with app.app_context():
        row = workspaces.stored(state, "ws-a")
    assert row.attention_at is not None
    assert KEY not in str(tuple(row))  # a fingerprint, not the key
    assert load(app, "ws-b").paused is False
    with app.app_context():
        settings.clear_rejected(state, "ws-a")
    s = load(app, "ws-a")
    assert s.paused is False and s.attention_reason is None
    with app.app_context():
        assert workspaces.stored(state, "ws-a").attention_at is None


def test_a_rejection_of_another_key_does_not_pause(bare_app):
    state = state_of(bare_app)
    store_key(bare_app, "ws-a")
    with bare_app.app_context():
        settings.mark_rejected(state, "ws-a", "wk_some_older_key", "401")
    s = load(bare_app, "ws-a", fresh=True)
    assert s.paused is False and s.attention_reason is None


def test_mark_rejected_creates_the_row_of_a_config_key(make_app):
    app = make_app(REFINER_SEGMENT_WRITE_KEY="wk_from_config_9a9a")
    with app.app_context():
        settings.mark_rejected(state_of(app), "default", "wk_from_config_9a9a", "403")
    s = load(app, "default", fresh=True)
    assert (s.paused, s.attention_reason, s.write_key_source) == (True, "403", "config")


def test_secret_unavailable_after_a_secret_key_change_is_an_error(make_app):
    old = make_app(REFINER_SEGMENT_WRITE_KEY="wk_from_config_9a9a")
    store_key(old, "ws-a")
    store_key(old, "default")
    new = make_app(REFINER_SEGMENT_WRITE_KEY="wk_from_config_9a9a", SECRET_KEY="new")
    s = load(new, "ws-a")
    assert s.write_key is None and s.write_key_source is None
    assert s.error is not None and "cannot be decrypted" in s.error
    assert s.write_key_masked == "••••0c7d"  # from the stored hint
    assert s.skip_reason("nps") == s.error and s.sendable is False
    # The default workspace's key comes from config: nothing to decrypt.
    default = load(new, "default")
    assert (default.write_key_source, default.error) == ("config", None)


def test_an_unusable_region_is_an_error_and_nothing_is_sent(bare_app):
    """With a write key but no usable data plane nothing goes anywhere (0.1 fell
    back to Segment's US host)."""
    store_key(bare_app, "ws-a", region="custom", custom_api_host=None)
    s = load(bare_app, "ws-a")
    assert s.error is not None and "custom data-plane URL" in s.error
    assert s.sendable is False and s.skip_reason("nps") == s.error
    store_key(bare_app, "ws-b", region="mars")
    s = load(bare_app, "ws-b")
    assert s.error is not None and "Unknown region" in s.error
    assert s.sendable is False and s.skip_reason("nps") == s.error


def test_save_settings_stores_as_the_page_does(bare_app, make_app):
    ext = state_of(bare_app).owner
    with bare_app.app_context():
        saved = ext.save_settings("ws-s", write_key=" wk_saved_key_91aa ", region="eu")
        assert saved.api_host == EU_HOST
        assert saved.write_key == "wk_saved_key_91aa"
        assert saved.write_key_masked == "••••91aa"
        row = workspaces.stored(state_of(bare_app), "ws-s")
        assert "wk_saved_key_91aa" not in str(row.write_key_encrypted)
        # The page's checks: a private data plane needs the host's opt-in.
        with pytest.raises(ValueError, match="internal|private|https"):
            ext.save_settings(
                "ws-s", region="custom", custom_api_host="http://10.0.0.1"
            )
        with pytest.raises(ValueError, match="Unknown region"):
            ext.save_settings("ws-s", region="mars")
        with pytest.raises(ValueError, match="empty"):
            ext.save_settings("ws-s", write_key="  ")
        # None keeps a value.
        assert ext.save_settings("ws-s").api_host == EU_HOST
        assert ext.settings("ws-s").write_key == "wk_saved_key_91aa"
    opted_in = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True,
    )
    with opted_in.app_context():
        saved = state_of(opted_in).owner.save_settings(
            "ws-p", region="custom", custom_api_host="http://10.0.0.1:8080/dp"
        )
        assert saved.api_host == "http://10.0.0.1:8080/dp"
        assert saved.host_error is None
        assert state_of(opted_in).owner.save_settings("ws-p", region="us").api_host == (
            US_HOST
        )
