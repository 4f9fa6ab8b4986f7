"""The settings page's delivery log through the test client, on SQLite and
PostgreSQL: paging, counts and the status filter, retrying failed deliveries,
Redis down.

The page helpers and fixtures are test_views.py's.
"""

from __future__ import annotations

import re
import typing as t

from flask import Flask
from flask_refiner_segment.testing.embedded_redis import free_port

from .conftest import run_worker
from .conftest import send_completion
from .test_views import KEY
from .test_views import URL
from .test_views import allow
from .test_views import follow
from .test_views import page_app as page_app  # a fixture
from .test_views import post_action
from .test_views import save

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
