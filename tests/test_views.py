"""The settings page through the test client (the browser walk is in test_browser)."""

from __future__ import annotations

import logging
import re

import pytest
import sqlalchemy as sa
from flask_refiner_segment.devredis import free_port

from .conftest import run_worker
from .conftest import send_completion

URL = "/integrations/segment/"
KEY = "wk_page_secret_key_7c1e"


def token(html: str) -> str:
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html).group(1)


@pytest.fixture
def page_app(make_app, segment):
    """An app configured from the page (no key in config), its guard allowing."""
    app = make_app(REFINER_SEGMENT_WRITE_KEY=None, REFINER_SEGMENT_API_HOST=None)
    app.extensions["refiner_segment"].ext.settings_guard(lambda: True)
    return app


def save(client, segment, **fields):
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
    return client.post(URL, data=data, follow_redirects=True)


def test_denied_without_guard(app):
    client = app.test_client()
    assert client.get(URL).status_code == 403
    assert client.post(URL + "test").status_code == 403


def test_denied_when_guard_says_no(app):
    app.extensions["refiner_segment"].ext.settings_guard(lambda: False)
    assert app.test_client().get(URL).status_code == 403


def test_config_key_is_shown_as_config(app):
    app.extensions["refiner_segment"].ext.settings_guard(lambda: True)
    html = app.test_client().get(URL).get_data(as_text=True)
    assert "set in app config" in html and "••••3fa9" in html
    assert app.config["REFINER_SEGMENT_WRITE_KEY"] not in html


def test_save_key_masked_encrypted_blank_keeps(page_app, segment, caplog):
    caplog.set_level(logging.DEBUG)
    client = page_app.test_client()
    response = save(client, segment, write_key=KEY)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Settings saved." in html
    assert "••••7c1e" in html and KEY not in html
    response = save(client, segment, write_key="", trait_prefix="")
    with page_app.app_context():
        settings = page_app.extensions["refiner_segment"].ext.settings()
        assert (settings.write_key, settings.trait_prefix) == (KEY, "")
        db = page_app.extensions["test_db"]
        dump = "\n".join(
            str(r)
            for table in db.metadata.sorted_tables
            for r in db.session.execute(sa.select(table))
        )
    assert KEY not in dump
    assert KEY not in caplog.text


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"trait_prefix": "Refiner-"}, "lowercase letters"),
        ({"trait_prefix": "1abc"}, "lowercase letters"),
        ({"trait_prefix": "a" * 41}, "lowercase letters"),
        ({"track_event": ""}, "This field is required"),
        ({"track_event": "x" * 201}, "200"),
        ({"custom_api_host": ""}, "Enter the data-plane URL"),
        ({"custom_api_host": "ftp://dp.example.com"}, "https://"),
        ({"custom_api_host": "http://dp.example.com"}, "only allowed for localhost"),
        ({"custom_api_host": "https://10.0.0.5/"}, "Internal addresses"),
        ({"custom_api_host": "https://169.254.169.254/"}, "Internal addresses"),
        ({"custom_api_host": "https://user:pw@dp.example.com"}, "credentials"),
        ({"custom_api_host": "https://x:99999"}, "valid URL"),
        ({"send_all": "selected", "surveys": "  "}, "at least one survey"),
        ({"write_key": "k" * 500}, "200"),
    ],
)
def test_bad_input_gets_a_form_error(page_app, segment, fields, error):
    response = save(page_app.test_client(), segment, **fields)
    assert response.status_code == 400
    assert error in response.get_data(as_text=True)


def test_private_hosts_allowed_by_config(make_app, segment):
    app = make_app(
        REFINER_SEGMENT_WRITE_KEY=None,
        REFINER_SEGMENT_API_HOST=None,
        REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS=True,
    )
    app.extensions["refiner_segment"].ext.settings_guard(lambda: True)
    response = save(app.test_client(), segment, custom_api_host="https://10.0.0.5/")
    assert "Settings saved." in response.get_data(as_text=True)


def test_csrf_is_required(page_app):
    client = page_app.test_client()
    for path in ("", "test", "retry-failed", "rotate-key"):
        response = client.post(URL + path, data={"track_event": "x"})
        assert response.status_code == 400, path
    html = client.post(URL, data={"csrf_token": "forged"}).get_data(as_text=True)
    assert "CSRF token is invalid" in html


def test_surveys_selection(page_app, segment, redis_conn):
    client = page_app.test_client()
    save(
        client, segment, write_key=KEY, send_all="selected", surveys="nps-2026\nother\n"
    )
    send_completion(page_app, 1)
    send_completion(page_app, 2, survey_id="not-selected")
    html = client.get(URL).get_data(as_text=True)
    assert "nps-2026" in html and "is not selected to send" in html


def test_send_test_shows_answer(page_app, segment):
    client = page_app.test_client()
    save(client, segment, write_key=KEY)
    html = client.get(URL).get_data(as_text=True)
    response = client.post(
        URL + "test", data={"csrf_token": token(html)}, follow_redirects=True
    )
    assert "accepted the test event: HTTP 200" in response.get_data(as_text=True)
    segment.set_fault(status=401)
    response = client.post(
        URL + "test", data={"csrf_token": token(html)}, follow_redirects=True
    )
    text = response.get_data(as_text=True)
    assert "refused the test event: HTTP 401" in text
    assert "Deliveries are paused" in text and KEY not in text


def test_send_test_network_error_and_no_key(page_app, segment):
    client = page_app.test_client()
    html = client.get(URL).get_data(as_text=True)
    response = client.post(
        URL + "test", data={"csrf_token": token(html)}, follow_redirects=True
    )
    assert "No Segment write key" in response.get_data(
        as_text=True
    ) or "no Segment write key" in response.get_data(as_text=True)
    save(
        client,
        segment,
        write_key=KEY,
        custom_api_host=f"http://127.0.0.1:{free_port()}",
    )
    response = client.post(
        URL + "test", data={"csrf_token": token(html)}, follow_redirects=True
    )
    assert "Test event failed: connection refused" in response.get_data(as_text=True)


def test_delivery_log_paging_and_retry(page_app, segment, redis_url):
    client = page_app.test_client()
    save(client, segment, write_key=KEY)
    segment.set_fault(status=400)
    for n in range(55):
        send_completion(page_app, n)
    run_worker(page_app, redis_url)
    html = client.get(URL).get_data(as_text=True)
    assert re.search(r'id="count-failed">55<', html)
    assert html.count('class="rs-status failed"') == 50 and 'id="older"' in html
    assert (
        client.get(URL + "?page=2")
        .get_data(as_text=True)
        .count('class="rs-status failed"')
        == 5
    )
    segment.clear_faults()
    response = client.post(
        URL + "retry-failed", data={"csrf_token": token(html)}, follow_redirects=True
    )
    assert "55 failed deliveries queued again." in response.get_data(as_text=True)
    run_worker(page_app, redis_url)
    assert re.search(
        r'id="count-sent">55<', client.get(URL + "?status=sent").get_data(as_text=True)
    )


def test_inbound_key_first_view_and_rotate(page_app):
    client = page_app.test_client()
    html = client.get(URL).get_data(as_text=True)
    first = re.search(r'id="new-inbound-key">([^<]+)<', html).group(1)
    assert "http://localhost/integrations/segment/inbound" in html
    again = client.get(URL).get_data(as_text=True)
    assert first not in again and f"••••{first[-4:]}" in again
    auth = (first, "")
    ok = client.post(
        "/integrations/segment/inbound",
        json={"type": "identify", "userId": "u", "traits": {"a": 1}},
        auth=auth,
    )
    assert ok.status_code == 200
    rotated = client.post(
        URL + "rotate-key", data={"csrf_token": token(again)}
    ).get_data(as_text=True)
    second = re.search(r'id="new-inbound-key">([^<]+)<', rotated).group(1)
    assert second != first
    old = client.post(
        "/integrations/segment/inbound",
        json={"type": "identify", "userId": "u"},
        auth=auth,
    )
    assert old.status_code == 401


def test_webhook_secret_set_and_clear(page_app, segment):
    client = page_app.test_client()
    save(client, segment, write_key=KEY, webhook_secret="shh-secret-9911")
    html = client.get(URL).get_data(as_text=True)
    assert "••••9911" in html and "shh-secret-9911" not in html
    save(client, segment, clear_webhook_secret="y")
    assert "••••9911" not in client.get(URL).get_data(as_text=True)


def test_secret_key_changed_shows_error(make_app, page_app, segment):
    save(page_app.test_client(), segment, write_key=KEY)
    rotated = make_app(
        REFINER_SEGMENT_WRITE_KEY=None, REFINER_SEGMENT_API_HOST=None, SECRET_KEY="new"
    )
    rotated.extensions["refiner_segment"].ext.settings_guard(lambda: True)
    response = rotated.test_client().get(URL)
    assert response.status_code == 200
    assert "cannot be decrypted" in response.get_data(as_text=True)


def test_templates_extend_a_configurable_base(make_app, tmp_path):
    app = make_app(REFINER_SEGMENT_BASE_TEMPLATE="host_base.html")
    app.extensions["refiner_segment"].ext.settings_guard(lambda: True)
    from jinja2 import DictLoader

    app.jinja_loader = DictLoader(
        {
            "host_base.html": "<header>HOST LAYOUT</header>"
            "{% block content %}{% endblock %}"
        }
    )
    html = app.test_client().get(URL).get_data(as_text=True)
    assert "HOST LAYOUT" in html and "Segment integration" in html
