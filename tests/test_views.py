"""The settings page through the test client, on SQLite and PostgreSQL: access
and CSRF, failure modes, tenancy, templates and headers.

The page helpers and fixtures live here; the other parts import them: the
settings form, the write key and the test event in test_views_settings.py,
the delivery log in test_views_delivery_log.py, the inbound key and the
webhook secret in test_views_inbound.py. The browser walk is in
test_browser.py; form checks in test_forms.py.
"""

from __future__ import annotations

import re
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask

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
