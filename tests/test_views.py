"""The settings page through the test client, on SQLite and PostgreSQL.

The browser walk is in test_browser.py; form checks in test_forms.py.
"""

from __future__ import annotations

import logging
import re
import threading
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from flask_refiner_segment.testing.embedded_redis import free_port

from .conftest import run_worker
from .conftest import send_completion

URL = "/integrations/segment/"
INBOUND = "/integrations/segment/inbound"
KEY = "wk_page_secret_key_7c1e"
POSTS = ("", "test", "retry-failed", "rotate-key", "webhook-secret")


def token(html: str) -> str:
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1)


def allow(app: Flask, allowed: bool = True) -> None:
    app.extensions["refiner_segment"].owner.settings_guard(lambda: allowed)


def state_of(app: Flask) -> t.Any:
    return app.extensions["refiner_segment"]


def settings_of(app: Flask, ws: str | None = None) -> t.Any:
    with app.app_context():
        return state_of(app).owner.settings(ws)


def stored_row(app: Flask, ws: str = "default") -> dict[str, t.Any] | None:
    table = state_of(app).tables.outbound.Workspace.__table__
    with app.app_context():
        row = (
            state_of(app)
            .db.session.execute(sa.select(table).where(table.c.workspace_id == ws))
            .mappings()
            .first()
        )
        return dict(row) if row is not None else None


def dump_db(app: Flask) -> str:
    db = app.extensions["test_db"]
    with app.app_context():
        return "\n".join(
            str(r)
            for table in db.metadata.sorted_tables
            for r in db.session.execute(sa.select(table))
        )


@pytest.fixture
def page_app(make_app: t.Callable[..., Flask]) -> Flask:
    """An app configured from the page (no key or host in config), guard allowing;
    private hosts allowed, so the Segment stand-in on 127.0.0.1 can be saved."""
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True,
    )
    allow(app)
    return app


@pytest.fixture
def strict_app(make_app: t.Callable[..., Flask]) -> Flask:
    """Like ``page_app``, without the host's opt-in to private hosts."""
    app = make_app(REFINER_SEGMENT_WRITE_KEY=None, REFINER_SEGMENT_API_HOST=None)
    allow(app)
    return app


def save(client: t.Any, segment: t.Any, **fields: t.Any) -> t.Any:
    """Submit the settings form like the browser does (region custom -> stand-in)."""
    html = client.get(URL).get_data(as_text=True)
    data = {
        "csrf_token": token(html),
        "enabled": "y",
        "region": "custom",
        "custom_api_host": segment.url,
        "track_event": "Survey Completed",
        "trait_prefix": "refiner_",
        "send_all": "all",
        **fields,
    }
    return client.post(URL, data={k: v for k, v in data.items() if v is not None})


def post_action(client: t.Any, path: str, **data: t.Any) -> t.Any:
    html = client.get(URL).get_data(as_text=True)
    return client.post(URL + path, data={"csrf_token": token(html), **data})


def follow(client: t.Any, response: t.Any) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)[:2000]
    return t.cast(str, client.get(response.headers["Location"]).get_data(as_text=True))


# -- access and CSRF ---------------------------------------------------------


def test_403_without_a_guard(app: Flask) -> None:
    client = app.test_client()
    assert client.get(URL).status_code == 403
    assert client.get(URL + "static/refiner_segment/style.css").status_code == 403
    for path in POSTS:
        assert client.post(URL + path).status_code == 403, path


def test_403_when_the_guard_says_no(page_app: Flask) -> None:
    allow(page_app, False)
    client = page_app.test_client()
    assert client.get(URL).status_code == 403
    for path in POSTS:
        assert client.post(URL + path, data={"write_key": KEY}).status_code == 403
    assert stored_row(page_app) is None


def test_guard_is_asked_per_request(page_app: Flask) -> None:
    calls: list[str] = []

    @state_of(page_app).owner.settings_guard
    def guard() -> bool:
        calls.append("x")
        return True

    client = page_app.test_client()
    assert client.get(URL).status_code == 200
    with client.get(URL + "static/refiner_segment/style.css") as css:
        assert css.status_code == 200
    assert len(calls) == 2


def test_guard_may_redirect_to_a_login_page(page_app: Flask) -> None:
    from flask import abort
    from flask import redirect

    @state_of(page_app).owner.settings_guard
    def guard() -> bool:
        abort(redirect("/login"))

    response = page_app.test_client().get(URL)
    assert response.status_code == 302 and response.headers["Location"] == "/login"


def test_csrf_missing_or_wrong_is_refused(make_app: t.Callable[..., Flask]) -> None:
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        WTF_CSRF_ENABLED=True,
    )
    allow(app)
    client = app.test_client()
    client.get(URL)  # generates the inbound key, opens the session
    before = stored_row(app)
    form = {"write_key": KEY, "region": "us", "track_event": "x", "send_all": "all"}
    for path in POSTS:
        for data in (form, {**form, "csrf_token": "forged"}):
            response = client.post(URL + path, data=data)
            assert response.status_code == 400, path
            html = response.get_data(as_text=True)
            assert "CSRF" in html and KEY not in html
    assert stored_row(app) == before  # nothing saved, no key rotated


def test_works_with_the_hosts_csrfprotect(page_app: Flask, segment: t.Any) -> None:
    from flask_wtf.csrf import CSRFProtect

    CSRFProtect(page_app)
    client = page_app.test_client()
    assert client.post(URL, data={"write_key": KEY}).status_code == 400
    assert save(client, segment, write_key=KEY).status_code == 302
    assert settings_of(page_app).write_key == KEY


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


# -- delivery log ------------------------------------------------------------


def test_delivery_log_paging_counts_and_filter(
    page_app: Flask, segment: t.Any, redis_url: str
) -> None:
    client = page_app.test_client()
    follow(client, save(client, segment, write_key=KEY))
    segment.set_fault(status=400)
    for n in range(53):
        send_completion(page_app, n)
    send_completion(page_app, 100, user_id=None)
    send_completion(page_app, 101, user_id="")
    run_worker(page_app, redis_url)
    html = client.get(URL).get_data(as_text=True)
    assert re.search(r'id="count-failed">53<', html)
    assert re.search(r'id="count-skipped">2<', html)
    assert html.count('class="rs-status ') == 50
    assert "page 1 of 2 (55 deliveries)" in html and 'id="older"' in html
    assert "HTTP 400" in html and "Created (UTC)" in html
    page2 = client.get(URL + "?page=2").get_data(as_text=True)
    assert page2.count('class="rs-status ') == 5 and 'id="newer"' in page2
    assert (
        client.get(URL + "?page=99").get_data(as_text=True).count('class="rs-status ')
        == 5
    )  # clamped to the last page
    assert client.get(URL + "?page=x").status_code == 200
    skipped = client.get(URL + "?status=skipped").get_data(as_text=True)
    assert skipped.count('class="rs-status skipped"') == 2
    assert skipped.count('class="rs-status failed"') == 0
    bogus = client.get(URL + "?status=<script>").get_data(as_text=True)
    assert bogus.count('class="rs-status ') == 50 and "<script>" not in bogus


def test_retry_failed(page_app: Flask, segment: t.Any, redis_url: str) -> None:
    client = page_app.test_client()
    follow(client, save(client, segment, write_key=KEY))
    html = client.get(URL).get_data(as_text=True)
    assert re.search(r'<button[^>]*id="retry-failed"[^>]*disabled', html)
    segment.set_fault(status=400)
    for n in range(3):
        send_completion(page_app, n)
    run_worker(page_app, redis_url)
    segment.clear_faults()
    html = follow(client, post_action(client, "retry-failed"))
    assert "3 failed deliveries queued again." in html
    run_worker(page_app, redis_url)
    html = client.get(URL).get_data(as_text=True)
    assert re.search(r'id="count-sent">3<', html)
    assert re.search(r'id="count-failed">0<', html)
    html = follow(client, post_action(client, "retry-failed"))
    assert "0 failed deliveries queued again." in html


def test_redis_down_is_not_a_500(
    make_app: t.Callable[..., Flask], segment: t.Any
) -> None:
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        REFINER_SEGMENT_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True,
    )
    allow(app)
    client = app.test_client()
    html = follow(client, save(client, segment, write_key=KEY))
    assert "Settings saved." in html and "Redis is unreachable" in html


# -- inbound -----------------------------------------------------------------


def test_get_never_writes_and_the_key_is_generated_by_a_post(page_app: Flask) -> None:
    client = page_app.test_client()
    for _ in range(2):  # a view (or a cross-site GET) changes nothing
        response = client.get(URL)
        assert response.status_code == 200
        html = response.get_data(as_text=True)
        assert 'id="new-inbound-key"' not in html and 'id="generate-key"' in html
    assert stored_row(page_app) is None
    generated = client.post(URL + "rotate-key", data={"csrf_token": token(html)})
    assert generated.status_code == 200
    assert generated.headers["Cache-Control"] == "no-store"
    first = re.search(  # type: ignore[union-attr]
        r'id="new-inbound-key">([^<]+)<', generated.get_data(as_text=True)
    ).group(1)
    assert first.startswith("rsk_")
    assert 'id="inbound-url">http://localhost/integrations/segment/inbound<' in html
    again = client.get(URL).get_data(as_text=True)
    assert first not in again and f'id="inbound-key">••••{first[-4:]}<' in again
    assert 'id="rotate-key"' in again and 'id="generate-key"' not in again
    identify = {"type": "identify", "userId": "u", "traits": {"a": 1}}
    assert client.post(INBOUND, json=identify, auth=(first, "")).status_code == 200
    rotated = client.post(URL + "rotate-key", data={"csrf_token": token(again)})
    assert rotated.status_code == 200
    assert rotated.headers["Cache-Control"] == "no-store"
    second = re.search(  # type: ignore[union-attr]
        r'id="new-inbound-key">([^<]+)<', rotated.get_data(as_text=True)
    ).group(1)
    assert second != first
    assert client.post(INBOUND, json=identify, auth=(first, "")).status_code == 401
    assert client.post(INBOUND, json=identify, auth=(second, "")).status_code == 200
    assert first not in dump_db(page_app) and second not in dump_db(page_app)
    assert second not in client.get(URL).get_data(as_text=True)


def test_pages_work_with_csrf_disabled(
    make_app: t.Callable[..., Flask], segment: t.Any
) -> None:
    """Hosts turn CSRF off in their own test suites: no page may fail then."""
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        WTF_CSRF_ENABLED=False,
    )
    allow(app)
    client = app.test_client()
    assert client.get(URL).status_code == 200
    bad = {"enabled": "y", "region": "us", "track_event": "", "send_all": "all"}
    response = client.post(URL, data={**bad, "trait_prefix": "Not Valid!"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert 'id="error-trait_prefix"' in html and 'id="error-track_event"' in html
    response = client.post(URL + "webhook-secret", data={"secret": "s" * 300})
    assert response.status_code == 400
    assert "at most 200" in response.get_data(as_text=True)
    for path in POSTS:
        assert client.post(URL + path, data={}).status_code < 500, path
    segments = URL + "segments/"
    assert client.get(segments).status_code == 200
    response = client.post(segments + "new", data={"name": "x", "rules": "{"})
    assert response.status_code == 400
    response = client.post(segments + "new", data={"name": "", "rules": "{}"})
    assert response.status_code == 400
    assert client.post(segments + "1/delete").status_code == 404


def test_inbound_key_from_config(make_app: t.Callable[..., Flask]) -> None:
    app = make_app(REFINER_SEGMENT_INBOUND_API_KEY="rsk_from_config_key")
    allow(app)
    client = app.test_client()
    html = client.get(URL).get_data(as_text=True)
    assert "REFINER_SEGMENT_INBOUND_API_KEY" in html
    assert 'id="new-inbound-key"' not in html and 'id="rotate-key"' not in html
    assert "rsk_from_config_key" not in html
    html = follow(client, post_action(client, "rotate-key"))
    assert "change it there" in html
    row = stored_row(app)
    assert row is None or row["inbound_key_hash"] is None


def test_webhook_secret_set_keep_and_clear(page_app: Flask) -> None:
    client = page_app.test_client()
    secret = "shh-secret-9911"
    html = follow(client, post_action(client, "webhook-secret", secret=secret))
    assert "Shared secret saved." in html and "••••9911" in html and secret not in html
    assert secret not in dump_db(page_app)
    html = follow(client, post_action(client, "webhook-secret", secret=""))
    assert "Shared secret unchanged." in html and "••••9911" in html
    response = post_action(client, "webhook-secret", secret="s" * 300)
    assert response.status_code == 400
    assert "at most 200" in response.get_data(as_text=True)
    html = follow(client, post_action(client, "webhook-secret", clear="y"))
    assert "Shared secret removed." in html and "••••9911" not in html
    assert stored_row(page_app)["webhook_secret_encrypted"] is None


# -- failure modes, tenancy, templates ---------------------------------------


def test_changed_secret_key_shows_a_clear_error(
    make_app: t.Callable[..., Flask], page_app: Flask, segment: t.Any
) -> None:
    client = page_app.test_client()
    follow(client, save(client, segment, write_key=KEY))
    follow(client, post_action(client, "webhook-secret", secret="shh-9911"))
    rotated = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True,
        SECRET_KEY="new",
    )
    allow(rotated)
    client = rotated.test_client()
    response = client.get(URL)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'id="settings-error"' in html and "cannot be decrypted" in html
    assert "Paste the write key again" in html and "••••7c1e" in html
    assert "it cannot be decrypted (SECRET_KEY changed)" in html
    html = follow(client, post_action(client, "test"))
    assert "Test event not sent" in html and "cannot be decrypted" in html
    html = follow(client, save(client, segment, write_key=KEY))
    assert 'id="settings-error"' not in html
    assert settings_of(rotated).write_key == KEY


def test_workspace_loader_selects_the_workspace(
    make_app: t.Callable[..., Flask], segment: t.Any
) -> None:
    app = make_app(REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True)
    ext = state_of(app).owner
    allow(app)
    ext.workspace_loader(lambda: "acme")
    client = app.test_client()
    html = client.get(URL).get_data(as_text=True)
    assert 'id="workspace">acme<' in html
    # Config keys belong to the default workspace only.
    assert "REFINER_SEGMENT_WRITE_KEY" not in html
    follow(client, save(client, segment, write_key=KEY, track_event="Acme Done"))
    assert settings_of(app, "acme").write_key == KEY
    assert settings_of(app, "acme").track_event == "Acme Done"
    assert settings_of(app).write_key == "wk_test_3fa9"
    assert stored_row(app) is None  # the default workspace untouched


def test_templates_are_overridable_and_extend_a_configurable_base(
    make_app: t.Callable[..., Flask],
) -> None:
    from jinja2 import DictLoader

    app = make_app(REFINER_SEGMENT_BASE_TEMPLATE="host_base.html")
    allow(app)
    app.jinja_loader = DictLoader(
        {
            "host_base.html": "<header>HOST LAYOUT</header>"
            "<main>{% block content %}{% endblock %}</main>",
            "refiner_segment/_inbound.html": "<p id='host-inbound'>HOST INBOUND</p>",
        }
    )
    html = app.test_client().get(URL).get_data(as_text=True)
    assert "HOST LAYOUT" in html and "HOST INBOUND" in html
    assert 'id="settings-form"' in html
    # Inside a host layout the page brings its own (scoped) stylesheet.
    assert "/integrations/segment/static/refiner_segment/style.css" in html


def test_standalone_page_is_styled(page_app: Flask) -> None:
    client = page_app.test_client()
    html = client.get(URL).get_data(as_text=True)
    assert html.startswith("<!doctype html>") and "<title>Segment integration" in html
    assert html.count("refiner_segment/style.css") == 1
    with client.get(URL + "static/refiner_segment/style.css") as css:
        assert css.status_code == 200 and b".rs-status.failed" in css.data
        assert b"://" not in css.data  # nothing from a CDN


def test_own_pages_forbid_framing_and_sniffing(page_app: Flask) -> None:
    @page_app.get("/host-page")
    def host_page() -> str:
        return "the host's own page"

    client = page_app.test_client()
    for path in (URL, URL + "segments/", URL + "segments/new"):
        response = client.get(path)
        assert response.status_code == 200, path
        csp = response.headers["Content-Security-Policy"]
        assert "frame-ancestors 'self'" in csp and "object-src 'none'" in csp
        assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
    host = client.get("/host-page")
    for header in ("Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"):
        assert header not in host.headers  # the host's other responses are its own


def test_a_host_policy_wins_and_can_be_configured(
    make_app: t.Callable[..., Flask],
) -> None:
    app = make_app(REFINER_SEGMENT_CONTENT_SECURITY_POLICY="default-src 'self'")
    allow(app)
    assert app.test_client().get(URL).headers["Content-Security-Policy"] == (
        "default-src 'self'"
    )
    hosted = make_app()
    allow(hosted)

    @hosted.after_request
    def talisman_like(response: t.Any) -> t.Any:
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
        return response

    assert hosted.test_client().get(URL).headers["Content-Security-Policy"] == (
        "frame-ancestors 'none'"
    )


def test_next_attempt_has_its_date_and_zone(
    page_app: Flask, segment: t.Any, redis_url: str
) -> None:
    client = page_app.test_client()
    follow(client, save(client, segment, write_key=KEY))
    segment.set_fault(status=503)  # retried later: pending, in backoff
    send_completion(page_app, 1)
    run_worker(page_app, redis_url)
    html = client.get(URL).get_data(as_text=True)
    assert re.search(r'id="count-pending">1<', html), html[-3000:]
    assert re.search(r"next attempt \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", html), html[
        -3000:
    ]
