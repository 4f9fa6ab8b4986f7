"""The Segment client over real HTTP to the stand-in, and the stand-in itself."""

from __future__ import annotations

import base64
import email.utils
import json
import time

import pytest
import requests
from flask_refiner_segment.client import EU_HOST
from flask_refiner_segment.client import US_HOST
from flask_refiner_segment.client import SegmentClient
from flask_refiner_segment.client import classify_status
from flask_refiner_segment.client import resolve_api_host
from flask_refiner_segment.devredis import free_port

KEY = "wk_live_secret_3fa9"
TRACK = {"type": "track", "userId": "u", "event": "E", "messageId": "m-1"}


@pytest.fixture
def client(segment):
    c = SegmentClient(segment.url, KEY, connect_timeout=0.5, read_timeout=0.3)
    yield c
    c.close()


@pytest.mark.parametrize(
    "status, outcome",
    [
        (200, "ok"),
        (204, "ok"),
        (400, "permanent"),
        (401, "unauthorized"),
        (403, "unauthorized"),
        (404, "permanent"),
        (408, "retry"),
        (413, "permanent"),
        (429, "retry"),
        (500, "retry"),
        (501, "permanent"),
        (502, "retry"),
        (503, "retry"),
        (505, "permanent"),
    ],
)
def test_classify_status(status, outcome):
    assert classify_status(status) == outcome


@pytest.mark.parametrize("status", [400, 401, 403, 408, 429, 500, 501, 503, 505])
def test_statuses_over_http(client, segment, status):
    segment.set_fault(status=status, times=1)
    result = client.send([TRACK])
    assert result.status_code == status
    assert result.outcome == classify_status(status)
    assert str(status) in result.error
    assert KEY not in result.error + result.body + repr(client)


def test_ok_sends_basic_auth_and_body_key(client, segment):
    result = client.send([TRACK])
    assert (result.outcome, result.status_code, result.error) == ("ok", 200, "")
    assert segment.message_ids() == ["m-1"]
    # The stand-in accepts either; check both are there with a raw request.
    seen = {}

    def capture(environ, start_response):
        seen["auth"] = environ.get("HTTP_AUTHORIZATION")
        seen["body"] = json.loads(
            environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        )
        seen["retry"] = environ.get("HTTP_X_RETRY_COUNT")
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        raw = SegmentClient(f"http://127.0.0.1:{server.server_port}/", KEY)
        raw.send([TRACK], attempt=2)
        first = seen["body"]["sentAt"]
        time.sleep(0.01)
        raw.send([TRACK])
    finally:
        server.shutdown()
    assert seen["auth"] == "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
    assert seen["body"]["writeKey"] == KEY
    assert seen["body"]["batch"] == [TRACK]
    assert seen["body"]["sentAt"] != first  # refreshed on every attempt
    assert seen["retry"] is None


def test_retry_after_seconds_date_and_cap(segment):
    capped = SegmentClient(segment.url, KEY, retry_after_cap=5)
    segment.set_fault(status=429, retry_after="2", times=1)
    assert capped.send([TRACK]).retry_after == 2.0
    segment.set_fault(status=429, retry_after="3600", times=1)
    assert capped.send([TRACK]).retry_after == 5.0
    later = email.utils.formatdate(time.time() + 3, usegmt=True)
    segment.set_fault(status=503, retry_after=later, times=1)
    assert 1.0 <= capped.send([TRACK]).retry_after <= 5.0
    segment.set_fault(status=503, retry_after="soon", times=1)
    assert capped.send([TRACK]).retry_after is None


def test_connection_refused_is_retryable_and_clean():
    port = free_port()
    result = SegmentClient(f"http://127.0.0.1:{port}", KEY, connect_timeout=0.5).send(
        [TRACK]
    )
    assert (result.outcome, result.status_code) == ("retry", None)
    assert result.error.startswith("connection refused")
    assert KEY not in result.error


def test_read_timeout_is_retryable(client, segment):
    segment.set_fault(delay=1.0, times=1)
    started = time.monotonic()
    result = client.send([TRACK])
    assert time.monotonic() - started < 0.9
    assert (result.outcome, result.status_code) == ("retry", None)
    assert "timed out" in result.error


def test_resolve_api_host():
    assert resolve_api_host("us") == US_HOST
    assert resolve_api_host("eu") == EU_HOST == "https://events.eu1.segmentapis.com"
    assert (
        resolve_api_host("custom", "https://dp.example.com/")
        == "https://dp.example.com"
    )
    with pytest.raises(ValueError, match="custom data-plane URL is required"):
        resolve_api_host("custom")
    with pytest.raises(ValueError, match="Unknown region"):
        resolve_api_host("mars")


def test_standin_validates_like_segment(segment):
    url = segment.url + "/v1/batch"
    auth = (KEY, "")
    assert requests.post(url, json={"batch": [TRACK]}).status_code == 401
    assert (
        requests.post(
            url, data=b"{nope", auth=auth, headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    big = {**TRACK, "messageId": "big", "properties": {"x": "y" * 33_000}}
    assert requests.post(url, json={"batch": [big]}, auth=auth).status_code == 400
    bad = [
        {"type": "track", "userId": "u", "messageId": "no-event"},
        {"type": "identify", "messageId": "no-user"},
        {"type": "group", "userId": "u", "messageId": "no-group"},
        {"type": "track", "userId": "u", "event": "E", "messageId": "x" * 101},
    ]
    assert (
        requests.post(url, json={"batch": [*bad, TRACK, TRACK]}, auth=auth).status_code
        == 200
    )
    assert [r["reason"] for r in segment.rejected] == [
        "track without event",
        "no_user_anon_id",
        "group without groupId",
        "messageId over 100 characters",
    ]
    assert segment.message_ids() == ["m-1"] and segment.duplicates == 1
    single = requests.post(
        segment.url + "/v1/identify", json={"userId": "u", "writeKey": KEY}
    )
    assert single.status_code == 200 and segment.messages[-1]["type"] == "identify"
    listing = requests.get(segment.url + "/messages").json()
    assert listing["duplicates"] == 1 and len(listing["messages"]) == 2
    page = requests.get(segment.url + "/")
    assert "2 calls received" in page.text and "identify" in page.text
    requests.post(segment.url + "/faults", json={"status": 503, "times": 1})
    assert requests.post(url, json={"batch": [TRACK]}, auth=auth).status_code == 503
    requests.post(segment.url + "/reset")
    assert segment.messages == []
