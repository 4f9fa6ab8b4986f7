"""The Segment stand-in over real HTTP: the messages, stats and reset endpoints,
wait_for, and the page of calls (also mounted under a prefix).
"""

from __future__ import annotations

import threading
import time
import typing as t

import requests
from flask_refiner_segment.testing.standin import SegmentStandIn
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

from .test_standin import AUTH
from .test_standin import post
from .test_standin import track


def test_messages_stats_and_reset_endpoints(segment: t.Any) -> None:
    post(segment, [track(1), track(1), {"type": "identify"}])
    listing = requests.get(segment.url + "/messages").json()
    assert [m["messageId"] for m in listing["messages"]] == ["m-1"]
    assert listing["rejected"][0]["reason"] == "no_user_anon_id"
    assert (listing["duplicates"], listing["duplicate_ids"]) == (1, ["m-1"])
    assert listing["requests"] == 1
    stats = requests.get(segment.url + "/stats").json()
    assert stats == {"accepted": 1, "rejected": 1, "duplicates": 1, "requests": 1}
    assert requests.post(segment.url + "/reset").ok
    assert requests.get(segment.url + "/stats").json()["requests"] == 0
    assert segment.messages == [] and segment.duplicates == 0
    assert post(segment, [track(1)]).ok and segment.duplicates == 0  # seen ids too
    assert requests.get(segment.url + "/nope").status_code == 404


def test_reset_drops_requests_in_flight(segment: t.Any) -> None:
    segment.set_fault(delay=0.3, times=1)
    thread = threading.Thread(target=post, args=(segment, [track(1)]))
    thread.start()
    time.sleep(0.1)
    segment.reset()
    thread.join()
    assert segment.messages == []


def test_wait_for(segment: t.Any) -> None:
    assert not segment.wait_for(1, timeout=0.05)
    threading.Timer(0.1, post, args=(segment, [track(1), track(2)])).start()
    assert segment.wait_for(2, timeout=5)


def test_page_lists_calls_newest_first(segment: t.Any) -> None:
    post(segment, [{"type": "identify", "userId": "u-1", "traits": {"x": "<b>"}}])
    post(segment, [{"type": "group", "userId": "u-1", "groupId": "acct-9"}])
    post(segment, [track(1, properties={"survey": "NPS"})])
    page = requests.get(segment.url + "/")
    assert page.headers["Content-Type"].startswith("text/html")
    text = page.text
    assert "3 calls received, 0 duplicates dropped, 0" in text
    assert (
        text.index("call-track")
        < text.index("call-group")
        < text.index("call-identify")
    )
    assert "acct-9" in text and "&lt;b&gt;" in text and "<b>" not in text


def test_page_when_mounted_under_a_prefix() -> None:
    standin = SegmentStandIn()
    app = DispatcherMiddleware(Response("host app"), {"/segment-standin": standin})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/segment-standin"
    try:
        assert requests.post(
            base + "/v1/batch", json={"batch": [track()]}, auth=AUTH
        ).ok
        page = requests.get(base)  # redirected to base + "/"
        assert page.url == base + "/" and "1 calls received" in page.text
        assert 'href="messages"' in page.text
        assert len(requests.get(base + "/messages").json()["messages"]) == 1
    finally:
        server.shutdown()
        server.server_close()
