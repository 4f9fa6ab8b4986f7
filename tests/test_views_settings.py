"""The settings page's form through the test client, on SQLite and PostgreSQL:
the write key, the region, bad input, the surveys selection and the test
event.

The page helpers and fixtures are test_views.py's. The browser walk is in
test_browser.py; form checks in test_forms.py.
"""

from __future__ import annotations

import logging
import re
import threading
import typing as t

import pytest
from flask import Flask
from flask_refiner_segment.testing.embedded_redis import free_port

from .conftest import send_completion
from .test_views import KEY
from .test_views import URL
from .test_views import allow
from .test_views import dump_db
from .test_views import follow
from .test_views import page_app as page_app  # a fixture
from .test_views import post_action
from .test_views import save
from .test_views import settings_of
from .test_views import state_of
from .test_views import stored_row
from .test_views import strict_app as strict_app  # a fixture
from .test_views import token

# -- the write key -----------------------------------------------------------


def test_saved_key_is_encrypted_masked_and_never_leaks(
    page_app: Flask, segment: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = page_app.test_client()
    response = save(client, segment, write_key=KEY)
    with client.session_transaction() as session:
        assert KEY not in str(dict(session))  # flashed messages live in the cookie
    html = follow(client, response)
    assert "Settings saved. Write key stored: ••••7c1e." in html
    assert 'id="write-key-masked">••••7c1e<' in html
    assert KEY not in html
    row = stored_row(page_app)
    assert (
        row is not None
        and row["write_key_encrypted"]
        and row["write_key_hint"] == "7c1e"
    )
    assert KEY not in dump_db(page_app)
    assert settings_of(page_app).write_key == KEY  # really stored, decryptable
    assert KEY not in caplog.text
    assert any("write key replaced" in r.getMessage() for r in caplog.records)


def test_blank_key_keeps_the_stored_one(page_app: Flask, segment: t.Any) -> None:
    client = page_app.test_client()
    save(client, segment, write_key=KEY)
    follow(client, save(client, segment, write_key="", track_event="Renamed"))
    current = settings_of(page_app)
    assert (current.write_key, current.track_event) == (KEY, "Renamed")
    follow(client, save(client, segment, write_key="wk_second_key_9999"))
    assert settings_of(page_app).write_key == "wk_second_key_9999"


def test_key_and_host_from_config_are_shown_and_not_editable(
    app: Flask, segment: t.Any
) -> None:
    allow(app)
    client = app.test_client()
    html = client.get(URL).get_data(as_text=True)
    assert "set in app config (refiner_segment_write_key)" in html.lower()
    assert re.search(r'<input[^>]*disabled[^>]*id="write_key"', html)
    assert "••••3fa9" in html and "wk_test_3fa9" not in html
    assert 'name="region"' not in html and "REFINER_SEGMENT_API_HOST" in html
    data = {
        "csrf_token": token(html),
        "write_key": "wk_ignored_1111",
        "enabled": "y",
        "track_event": "From Page",
        "trait_prefix": "",
        "send_all": "all",
    }
    follow(client, client.post(URL, data=data))
    current = settings_of(app)
    assert current.write_key == "wk_test_3fa9" and current.write_key_source == "config"
    assert current.api_host == segment.url and current.track_event == "From Page"
    row = stored_row(app)
    assert row is not None and row["write_key_encrypted"] is None


@pytest.mark.parametrize(
    "region, host",
    [("us", "https://api.segment.io"), ("eu", "https://events.eu1.segmentapis.com")],
)
def test_region_is_saved(
    page_app: Flask, segment: t.Any, region: str, host: str
) -> None:
    client = page_app.test_client()
    follow(client, save(client, segment, region=region, custom_api_host="ignored"))
    current = settings_of(page_app)
    assert (current.region, current.api_host, current.custom_api_host) == (
        region,
        host,
        None,
    )
    html = client.get(URL).get_data(as_text=True)
    assert f'checked id="region-{["us", "eu"].index(region)}"' in html


# -- bad input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, field, error",
    [
        ({"trait_prefix": "Refiner-"}, "trait_prefix", "lowercase letters"),
        ({"trait_prefix": "1abc"}, "trait_prefix", "lowercase letters"),
        ({"trait_prefix": "a" * 41}, "trait_prefix", "lowercase letters"),
        ({"track_event": ""}, "track_event", "Enter the event name"),
        ({"track_event": "x" * 201}, "track_event", "at most 200"),
        ({"track_event": "a\x00b"}, "track_event", "Control characters"),
        ({"custom_api_host": ""}, "custom_api_host", "Enter the data-plane URL"),
        ({"custom_api_host": "ftp://dp.example.com"}, "custom_api_host", "https://"),
        ({"custom_api_host": "http://dp.example.com"}, "custom_api_host", "https://"),
        ({"custom_api_host": "http://127.0.0.1:6379"}, "custom_api_host", "https://"),
        ({"custom_api_host": "https://localhost"}, "custom_api_host", "Internal"),
        (
            {"custom_api_host": "https://[64:ff9b::a00:1]"},
            "custom_api_host",
            "Internal",
        ),
        ({"custom_api_host": "https://10.0.0.5/"}, "custom_api_host", "Internal"),
        (
            {"custom_api_host": "https://169.254.169.254/"},
            "custom_api_host",
            "Internal",
        ),
        (
            {"custom_api_host": "https://[::ffff:127.0.0.1]"},
            "custom_api_host",
            "Internal",
        ),
        ({"custom_api_host": "https://2130706433/"}, "custom_api_host", "Internal"),
        (
            {"custom_api_host": "https://u:p@dp.example.com"},
            "custom_api_host",
            "credentials",
        ),
        ({"custom_api_host": "https://x:99999"}, "custom_api_host", "valid URL"),
        ({"custom_api_host": "https://d.io/" + "a" * 3000}, "custom_api_host", "2048"),
        ({"region": "mars"}, "region", "Not a valid choice"),
        (
            {"send_all": "selected", "other_surveys": " "},
            "other_surveys",
            "at least one",
        ),
        ({"send_all": "selected", "other_surveys": "s" * 300}, "other_surveys", "255"),
        ({"write_key": "k" * 500}, "write_key", "at most 200"),
        ({"write_key": "two words"}, "write_key", "spaces"),
    ],
)
def test_bad_input_gets_an_error_next_to_the_field(
    strict_app: Flask, segment: t.Any, fields: dict[str, str], field: str, error: str
) -> None:
    page_app = strict_app
    response = save(page_app.test_client(), segment, **fields)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    found = re.search(rf'id="error-{field}">([^<]*)<', html)
    assert found and error in found.group(1), html[:3000]
    assert stored_row(page_app) is None or stored_row(page_app)["track_event"] is None
    if "write_key" in fields:
        assert fields["write_key"] not in html  # a write-only field stays empty


def test_private_hosts_allowed_by_config(
    make_app: t.Callable[..., Flask], segment: t.Any
) -> None:
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True,
    )
    allow(app)
    client = app.test_client()
    follow(client, save(client, segment, custom_api_host="http://10.0.0.5:8080"))
    assert settings_of(app).api_host == "http://10.0.0.5:8080"


def test_oversized_body_is_not_a_500(page_app: Flask, segment: t.Any) -> None:
    response = save(page_app.test_client(), segment, other_surveys="x" * 700_000)
    assert response.status_code in (400, 413)


# -- surveys -----------------------------------------------------------------


def test_surveys_selection(page_app: Flask, segment: t.Any, redis_conn: t.Any) -> None:
    client = page_app.test_client()
    follow(client, save(client, segment, write_key=KEY))
    send_completion(page_app, 1, survey_id="nps-2026")
    send_completion(page_app, 2, survey_id="onboarding")
    html = client.get(URL).get_data(as_text=True)
    for survey in ("nps-2026", "onboarding"):
        assert re.search(rf'<input[^>]*name="surveys"[^>]*value="{survey}"', html)
    data = {
        "csrf_token": token(html),
        "enabled": "y",
        "region": "custom",
        "custom_api_host": segment.url,
        "track_event": "Survey Completed",
        "trait_prefix": "refiner_",
        "send_all": "selected",
        "surveys": ["nps-2026"],
        "other_surveys": "churn-q3\n",
    }
    follow(client, client.post(URL, data=data))
    assert settings_of(page_app).surveys == {"nps-2026", "churn-q3"}
    assert stored_row(page_app)["surveys"] == ["churn-q3", "nps-2026"]
    html = client.get(URL).get_data(as_text=True)
    assert re.search(r'<input checked[^>]*name="surveys"[^>]*value="nps-2026"', html)
    assert re.search(r'<input[^>]*name="surveys"[^>]*value="churn-q3"', html)
    send_completion(page_app, 3, survey_id="onboarding")
    html = client.get(URL + "?status=skipped").get_data(as_text=True)
    assert "survey &#39;onboarding&#39; is not selected to send" in html
    follow(client, save(client, segment, send_all="all"))
    assert settings_of(page_app).surveys is None


# -- send test event ---------------------------------------------------------


def test_send_test_event_shows_segments_answer(page_app: Flask, segment: t.Any) -> None:
    client = page_app.test_client()
    follow(client, save(client, segment, write_key=KEY, track_event="Page Test"))
    html = follow(client, post_action(client, "test"))
    assert "Segment answered 200 OK: {&#34;success&#34;: true}" in html
    # Its own name whatever the survey event is called: not counted as a survey.
    assert [m["event"] for m in segment.messages] == ["Segment Test Event"]
    assert segment.messages[0]["properties"]["test"] is True
    assert KEY not in html


@pytest.mark.parametrize(
    "status, words",
    [
        (401, "Segment answered 401 Unauthorized"),
        (403, "Segment answered 403 Forbidden"),
        (503, "Segment answered 503 Service Unavailable"),
        (400, "Segment answered 400 Bad Request"),
    ],
)
def test_send_test_event_failing(
    page_app: Flask, segment: t.Any, status: int, words: str
) -> None:
    client = page_app.test_client()
    follow(client, save(client, segment, write_key=KEY))
    segment.set_fault(status=status)
    html = follow(client, post_action(client, "test"))
    assert words in html and KEY not in html
    if status in (401, 403):
        assert "the write key was rejected" in html
        assert 'id="paused-banner"' in html and "Deliveries are paused" in html
        segment.clear_faults()
        html = follow(client, save(client, segment, write_key="wk_new_key_5678"))
        assert 'id="paused-banner"' not in html
    elif status == 503:
        assert "temporary error" in html


def test_send_test_event_network_error_and_no_key(
    page_app: Flask, segment: t.Any
) -> None:
    client = page_app.test_client()
    html = follow(client, post_action(client, "test"))
    assert "Test event not sent: No Segment write key is configured." in html
    closed = f"http://127.0.0.1:{free_port()}"
    follow(client, save(client, segment, write_key=KEY, custom_api_host=closed))
    html = follow(client, post_action(client, "test"))
    assert (
        f"Segment could not be reached: connection refused: {closed}/v1/batch" in html
    )


def test_a_custom_host_never_shows_a_non_json_body(
    page_app: Flask, segment: t.Any
) -> None:
    """Send test event must not turn the page into a reader of internal services."""
    from werkzeug.serving import make_server
    from werkzeug.wrappers import Response

    def internal_service(environ: t.Any, start_response: t.Any) -> t.Any:
        body = "<html>admin panel: internal-secret-token</html>"
        return Response(body, 200, mimetype="text/html")(environ, start_response)

    server = make_server("127.0.0.1", 0, internal_service, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        client = page_app.test_client()
        url = f"http://127.0.0.1:{server.server_port}"
        follow(client, save(client, segment, write_key=KEY, custom_api_host=url))
        html = follow(client, post_action(client, "test"))
    finally:
        server.shutdown()
        thread.join(5)
    assert "Segment answered 200 OK" in html
    assert "internal-secret-token" not in html and "admin panel" not in html
    assert "not shown" in html


def test_a_stored_private_host_is_refused_when_not_allowed(
    strict_app: Flask, segment: t.Any
) -> None:
    """A loopback URL stored earlier (or by hand) is not used without the opt-in."""
    from flask_refiner_segment import workspaces
    from flask_refiner_segment.outbound.settings import write_key_values

    state = state_of(strict_app)
    with strict_app.app_context():
        values = write_key_values(state, KEY)
        values.update(region="custom", custom_api_host=segment.url)
        workspaces.update(state, "default", values)
    current = settings_of(strict_app)
    assert not current.sendable and "refused" in (current.host_error or "")
    client = strict_app.test_client()
    html = follow(client, post_action(client, "test"))
    assert "Test event not sent: the custom data-plane URL is refused" in html
    send_completion(strict_app, 1)
    with strict_app.app_context():
        assert state.owner.status_counts()["skipped"] == 1
    assert segment.messages == []
