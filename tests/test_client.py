"""The Segment client, over real HTTP to the stand-in and to a recording server."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import socket
import threading
import time
import typing as t
import urllib.parse

import pytest
import requests
from flask_refiner_segment.core.urls import EU_HOST
from flask_refiner_segment.core.urls import US_HOST
from flask_refiner_segment.core.urls import resolve_api_host
from flask_refiner_segment.outbound.client import SegmentClient
from flask_refiner_segment.outbound.client import SendResult
from flask_refiner_segment.outbound.client import classify_status
from flask_refiner_segment.outbound.client import parse_retry_after
from flask_refiner_segment.testing.embedded_redis import free_port
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

KEY = "wk_live_Secret+/key=3fa9"
BASIC = base64.b64encode(f"{KEY}:".encode()).decode()
TRACK = {"type": "track", "userId": "u", "event": "E", "messageId": "m-1"}


SECRETS = (KEY, BASIC, urllib.parse.quote(KEY, safe=""), urllib.parse.quote_plus(KEY))


def no_key(*texts: str) -> bool:
    return not any(secret in text for text in texts for secret in SECRETS)


@pytest.fixture
def client(segment: t.Any) -> t.Iterator[SegmentClient]:
    c = SegmentClient(segment.url, KEY, connect_timeout=0.5, read_timeout=0.2)
    yield c
    c.close()


class Recorder:
    """A real HTTP server that records requests and answers as told."""

    def __init__(self) -> None:
        self.requests: list[dict[str, t.Any]] = []
        self.status, self.body, self.headers = 200, b"{}", {}
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        serve = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        serve.daemon = True
        serve.start()

    def app(self, environ: t.Any, start_response: t.Any) -> t.Iterable[bytes]:
        request = Request(environ)
        raw = request.get_data()
        self.requests.append({"headers": request.headers, "raw": raw})
        body = self.body(request, raw) if callable(self.body) else self.body
        response = Response(body, self.status, self.headers)
        return response(environ, start_response)

    @property
    def last(self) -> dict[str, t.Any]:
        return self.requests[-1]


@pytest.fixture
def recorder() -> t.Iterator[Recorder]:
    r = Recorder()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "ok"),
        (202, "ok"),
        (204, "ok"),
        (301, "permanent"),
        (400, "permanent"),
        (401, "unauthorized"),
        (403, "unauthorized"),
        (404, "permanent"),
        (408, "retry"),
        (410, "permanent"),  # retried by Segment's libraries, not by SPEC §3
        (413, "permanent"),
        (429, "retry"),
        (460, "permanent"),
        (500, "retry"),
        (501, "permanent"),
        (502, "retry"),
        (503, "retry"),
        (504, "retry"),
        (505, "permanent"),
        (511, "retry"),
    ],
)
def test_classify_status(status: int, outcome: str) -> None:
    assert classify_status(status) == outcome


def test_ok(client: SegmentClient, segment: t.Any) -> None:
    started = time.monotonic()
    result = client.send([TRACK])
    took = time.monotonic() - started
    assert isinstance(result, SendResult)
    assert (result.outcome, result.status_code, result.error) == ("ok", 200, "")
    assert json.loads(result.body) == {"success": True}
    # Seconds, measured around the request (not milliseconds).
    assert result.retry_after is None and 0 < result.elapsed <= took
    assert segment.message_ids() == ["m-1"] and segment.rejected == []


@pytest.mark.parametrize("status", [400, 401, 403, 408, 413, 429, 500, 501, 503, 505])
def test_status_classes_over_http(
    client: SegmentClient, segment: t.Any, status: int
) -> None:
    segment.set_fault(status=status, times=1)
    result = client.send([TRACK])
    assert result.status_code == status
    assert result.outcome == classify_status(status)
    assert result.error.startswith(f"HTTP {status}: ")
    assert "injected fault" in result.error and "injected fault" in result.body
    assert no_key(result.error, result.body, repr(result), repr(client))
    assert segment.messages == []
    assert client.send([TRACK]).outcome == "ok"  # times=1: the fault is used up


def test_request_headers_and_body(recorder: Recorder) -> None:
    client = SegmentClient(recorder.url + "/", KEY, user_agent="probe/1")
    messages = [dict(TRACK), {"type": "identify", "userId": "ü", "traits": {}}]
    before = json.dumps(messages)
    assert client.send(messages).outcome == "ok"
    client.close()
    sent = recorder.last
    headers, body = sent["headers"], json.loads(sent["raw"])
    assert headers["Authorization"] == f"Basic {BASIC}"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "probe/1"
    assert "X-Retry-Count" not in headers
    assert list(body) == ["batch", "sentAt", "writeKey"]
    assert body["writeKey"] == KEY and body["batch"] == messages
    assert json.dumps(messages) == before  # not mutated
    assert "ü".encode() in sent["raw"] and b", " not in sent["raw"]  # compact UTF-8
    sent_at = dt.datetime.fromisoformat(body["sentAt"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.timezone.utc) - sent_at).total_seconds()) < 5
    assert body["sentAt"].endswith("Z") and len(body["sentAt"]) == 24


def test_default_user_agent_and_retry_count(recorder: Recorder) -> None:
    client = SegmentClient(recorder.url, KEY)
    client.send([TRACK], attempt=3)
    client.close()
    assert recorder.last["headers"]["X-Retry-Count"] == "3"
    assert recorder.last["headers"]["User-Agent"].startswith("flask-refiner-segment/")


def test_sent_at_refreshed_on_every_attempt(recorder: Recorder) -> None:
    client = SegmentClient(recorder.url, KEY)
    for attempt in range(3):
        client.send([TRACK], attempt=attempt)
        time.sleep(0.002)
    client.close()
    stamps = [json.loads(r["raw"])["sentAt"] for r in recorder.requests]
    assert len(set(stamps)) == 3 and stamps == sorted(stamps)
    batches = [json.loads(r["raw"])["batch"] for r in recorder.requests]
    assert batches == [[TRACK]] * 3  # the same messageId on every attempt


def test_retry_after_seconds_date_and_cap(segment: t.Any) -> None:
    capped = SegmentClient(segment.url, KEY, retry_after_cap=5)
    segment.set_fault(status=429, retry_after="2", times=1)
    assert capped.send([TRACK]).retry_after == 2.0
    segment.set_fault(status=429, retry_after=3600, times=1)
    assert capped.send([TRACK]).retry_after == 5.0
    later = email.utils.formatdate(time.time() + 3, usegmt=True)
    segment.set_fault(status=503, retry_after=later, times=1)
    assert 1.0 <= t.cast(float, capped.send([TRACK]).retry_after) <= 3.0
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    segment.set_fault(status=503, retry_after=past, times=1)
    assert capped.send([TRACK]).retry_after == 0.0
    segment.set_fault(status=503, retry_after="soon", times=1)
    assert capped.send([TRACK]).retry_after is None
    capped.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), (" 7 ", 7.0), ("1.5", 1.5), ("-1", None),
     ("nan", None), ("inf", None), ("999", 300.0), ("Mon, 32 Foo", None)],
)  # fmt: skip
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_connection_refused_is_retryable_and_clean() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    client = SegmentClient(url, KEY, connect_timeout=0.5)
    result = client.send([TRACK])
    client.close()
    assert (result.outcome, result.status_code, result.body) == ("retry", None, "")
    assert result.error == f"connection refused: {url}/v1/batch"
    assert no_key(result.error)


def test_read_timeout_is_retryable(client: SegmentClient, segment: t.Any) -> None:
    segment.set_fault(delay=1.5, times=1)
    started = time.monotonic()
    result = client.send([TRACK])
    assert time.monotonic() - started < 1.5  # it did not wait for the answer
    assert (result.outcome, result.status_code) == ("retry", None)
    assert result.error == f"timed out after 0.2s waiting for {segment.url}/v1/batch"
    # Segment may still have received it: the retry is deduplicated.
    assert segment.wait_for(1, timeout=10)
    assert client.send([TRACK]).outcome == "ok" and segment.duplicates == 1


def test_a_body_that_stops_arriving_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def trickle() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{")
                time.sleep(0.6)

        threading.Thread(target=trickle, daemon=True).start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        client = SegmentClient(url, KEY, read_timeout=0.2)
        result = client.send([TRACK])
        client.close()
    assert (result.outcome, result.status_code) == ("retry", None)
    assert result.error.startswith("timed out after 0.2s")


def test_write_key_never_leaks(recorder: Recorder) -> None:
    def echo(request: Request, raw: bytes) -> bytes:
        auth, quoted = request.headers["Authorization"], SECRETS[2:]
        return f"{auth} {raw.decode()} {quoted}".encode()

    recorder.status, recorder.body = 500, echo
    client = SegmentClient(recorder.url, KEY)
    result = client.send([TRACK])
    assert result.outcome == "retry" and "••••" in result.body
    assert no_key(result.error, result.body, repr(result), repr(client))
    for cut in range(1, len(BASIC)):  # a key across the 2,000-character cut
        recorder.status, recorder.body = 200, b"x" * (2000 - cut) + BASIC.encode()
        body = client.send([TRACK]).body
        assert BASIC[:cut] not in body and body.startswith("x" * (2000 - cut) + "•")
    client.close()
    # The key inside the URL: in every exception text requests builds.
    for url in (
        f"http://127.0.0.1:{free_port()}/{KEY}",
        f"http://{KEY}@127.0.0.1:{free_port()}",
        f"http://[{KEY}",
        f"nope://{KEY}",
    ):
        bad = SegmentClient(url, KEY, connect_timeout=0.5)
        result = bad.send([TRACK])
        assert result.outcome == "retry" and result.status_code is None
        assert no_key(result.error, repr(bad)), result.error
        assert "••••" in result.error + repr(bad)
        bad.close()


def test_repr_masks_the_key() -> None:
    client = SegmentClient(US_HOST, KEY)
    assert repr(client) == f"<SegmentClient {US_HOST}/v1/batch key=••••3fa9>"
    assert "key=••••>" in repr(SegmentClient(US_HOST, "short"))
    client.close()


def test_redirects_are_not_followed(recorder: Recorder) -> None:
    recorder.status, recorder.headers = 301, {"Location": "https://elsewhere/v1/batch"}
    client = SegmentClient(recorder.url, KEY)
    result = client.send([TRACK])
    client.close()
    assert result.outcome == "permanent" and len(recorder.requests) == 1
    assert "HTTP 301: Moved Permanently to https://elsewhere/v1/batch" in result.error


def test_json_error_detail_and_long_bodies(recorder: Recorder) -> None:
    recorder.status = 400
    recorder.body = b'{"code":"invalid_request","message":"bad\\ntimestamp"}'
    client = SegmentClient(recorder.url, KEY)
    assert client.send([TRACK]).error == (
        "HTTP 400: Bad Request (invalid_request bad timestamp)"
    )
    recorder.body = b"x" * 10_000
    result = client.send([TRACK])
    assert len(result.body) == 2000 and len(result.error) < 250
    recorder.status, recorder.body = 460, b""
    assert client.send([TRACK]).error.startswith("HTTP 460: ")
    # A code that only repeats the status phrase is not said twice.
    recorder.status = 401
    recorder.body = b'{"code":"unauthorized","message":"invalid write key"}'
    assert client.send([TRACK]).error == "HTTP 401: Unauthorized (invalid write key)"
    client.close()


def test_unserialisable_messages_raise_before_sending(recorder: Recorder) -> None:
    client = SegmentClient(recorder.url, KEY)
    with pytest.raises(TypeError):
        client.send([{**TRACK, "properties": {"at": object()}}])
    with pytest.raises(ValueError):
        client.send([{**TRACK, "properties": {"x": float("nan")}}])
    client.close()
    assert recorder.requests == []


def test_a_given_session_is_used_and_left_open(segment: t.Any) -> None:
    with requests.Session() as session:
        client = SegmentClient(segment.url, KEY, session=session)
        assert client.send([TRACK]).outcome == "ok"
        client.close()
        assert session.get(segment.url + "/stats").json()["accepted"] == 1


def test_resolve_api_host() -> None:
    assert resolve_api_host("us") == US_HOST == "https://api.segment.io"
    assert resolve_api_host("eu") == EU_HOST == "https://events.eu1.segmentapis.com"
    assert resolve_api_host("custom", "https://dp.example.com/") == (
        "https://dp.example.com"
    )
    assert resolve_api_host("custom", " http://10.0.0.5:8080// ") == (
        "http://10.0.0.5:8080"
    )
    for empty in (None, "", " / "):
        with pytest.raises(ValueError, match="custom data-plane URL is required"):
            resolve_api_host("custom", empty)
    with pytest.raises(ValueError, match="Unknown region 'mars'"):
        resolve_api_host("mars")
