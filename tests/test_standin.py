"""The Segment stand-in over real HTTP: validation, records, faults, pages."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import typing as t

import pytest
import requests
from flask_refiner_segment.testing.embedded_redis import free_port
from flask_refiner_segment.testing.standin import SegmentStandIn
from flask_refiner_segment.testing.standin import serve
from flask_refiner_segment.testing.standin_requests import load_body
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.serving import make_server
from werkzeug.wrappers import Response

KEY = "wk_standin_1234"
AUTH = (KEY, "")


def track(n: int | str = 1, **extra: t.Any) -> dict[str, t.Any]:
    return {
        "type": "track",
        "userId": "u",
        "event": "E",
        "messageId": f"m-{n}",
        **extra,
    }


def post(
    segment: t.Any,
    batch: list[t.Any],
    path: str = "/v1/batch",
    extra: dict[str, t.Any] | None = None,
) -> requests.Response:
    """POST compact UTF-8 JSON, as the client does."""
    body = {"batch": batch, **(extra or {})}
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}
    return requests.post(segment.url + path, data=data, headers=headers, auth=AUTH)


def test_accepts_basic_auth_or_body_key(segment: t.Any) -> None:
    assert post(segment, [track(1)]).json() == {"success": True}
    body = {"batch": [track(2)], "writeKey": KEY}
    assert requests.post(segment.url + "/v1/batch", json=body).status_code == 200
    bearer = {"Authorization": "Bearer oauth-token"}  # OAuth: the body key counts
    assert requests.post(segment.url + "/v1/b", json=body, headers=bearer).ok
    assert segment.message_ids() == ["m-1", "m-2"] and segment.duplicates == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"json": {"batch": [track()]}},
        {"json": {"batch": [track()], "writeKey": ""}},
        {"json": {"batch": [track()], "writeKey": KEY}, "auth": ("", "")},
        {"json": {"batch": [track()]}, "headers": {"Authorization": "Basic !!"}},
    ],
)
def test_missing_key_is_401(segment: t.Any, kwargs: dict[str, t.Any]) -> None:
    response = requests.post(segment.url + "/v1/batch", **kwargs)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert segment.messages == [] and segment.requests == 1


def test_unknown_key_is_401_when_keys_are_given() -> None:
    standin = SegmentStandIn(["good-key"])
    with serve(standin) as server:
        url = server.url + "/v1/batch"
        assert (
            requests.post(url, json={"batch": [track()]}, auth=AUTH).status_code == 401
        )
        body = {"batch": [track()], "writeKey": KEY}
        assert requests.post(url, json=body).status_code == 401
        good = requests.post(url, json={"batch": [track()]}, auth=("good-key", ""))
        assert good.status_code == 200 and standin.url == server.url
    assert standin.message_ids() == ["m-1"]


@pytest.mark.parametrize(
    ("data", "content_type", "code"),
    [
        (b"{nope", "application/json", "invalid_json"),
        (b"[1, 2]", "application/json", "invalid_json"),
        (b'{"batch": [1,]}', "application/json", "invalid_json"),
        (b'{"batch": []} x', "application/json", "invalid_json"),
        (b"\xff\xfe{}", "application/json", "invalid_json"),
        (b'{"batch": {}}', "application/json", "invalid_request"),
        (b'{"batch": []}', "text/plain", "invalid_request"),
        (b'{"batch": []}', "", "invalid_request"),
    ],
)
def test_bad_requests_are_400(
    segment: t.Any, data: bytes, content_type: str, code: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = requests.post(
        segment.url + "/v1/batch", data=data, auth=AUTH, headers=headers
    )
    assert (response.status_code, response.json()["code"]) == (400, code)


def test_size_limits(segment: t.Any) -> None:
    def sized(n: int, text: str) -> dict[str, t.Any]:
        return track(n, properties={"x": text})

    # 32 KB per message, as json.dumps measures it (ASCII escapes: 😀 is 12).
    assert post(segment, [sized(1, "y" * 32_000)]).status_code == 200
    assert post(segment, [sized(2, "y" * 33_000)]).status_code == 400
    assert post(segment, [sized(3, "😀" * 2_700)]).status_code == 200
    response = post(segment, [track(4), sized(5, "😀" * 2_800)])
    assert (
        response.status_code == 400 and response.json()["code"] == "message_too_large"
    )
    assert post(segment, [sized(6, "é\x7f" * 2_000)]).status_code == 200
    assert post(segment, [sized(7, "\x7f" * 5_500)]).status_code == 400
    single = {"userId": "u", "event": "E", "properties": {"x": "y" * 33_000}}
    assert (
        requests.post(segment.url + "/v1/track", json=single, auth=AUTH).status_code
        == 400
    )
    # 500 KB per request.
    many = [sized(n, "y" * 20_000) for n in range(10, 36)]
    response = post(segment, many)
    assert (
        response.status_code == 400 and response.json()["code"] == "request_too_large"
    )
    assert segment.message_ids() == ["m-1", "m-3", "m-6"]


def test_over_2500_messages_are_answered_200_and_rejected(segment: t.Any) -> None:
    batch = [
        {"type": "identify", "userId": "u", "messageId": str(n)} for n in range(2501)
    ]
    assert post(segment, batch).status_code == 200
    assert segment.messages == [] and len(segment.rejected) == 2501
    assert segment.rejected[0]["reason"] == "batch over 2500 messages"
    assert post(segment, batch[:2500]).status_code == 200
    assert len(segment.messages) == 2500


def test_invalid_messages_are_answered_200_and_rejected(segment: t.Any) -> None:
    bad = [
        ("not an object", "just a string"),
        ("missing or unknown type", {"userId": "u", "messageId": "a"}),
        ("missing or unknown type", {"type": "delete", "userId": "u"}),
        (
            "messageId is not a string",
            {"type": "identify", "userId": "u", "messageId": 5},
        ),
        ("messageId over 100 characters", track("x" * 99)),
        ("no_user_anon_id", {"type": "identify", "messageId": "b"}),
        ("no_user_anon_id", {"type": "page", "userId": "", "messageId": "c"}),
        ("no_user_anon_id", {"type": "identify", "userId": True, "messageId": "d"}),
        ("track without event", {"type": "track", "userId": "u", "messageId": "e"}),
        ("track without event", track("f", event=7)),
        ("group without groupId", {"type": "group", "userId": "u", "messageId": "g"}),
        ("alias without userId and previousId", {"type": "alias", "userId": "u"}),
        ("traits is not an object", {"type": "identify", "userId": "u", "traits": []}),
        ("properties is not an object", track("h", properties="x")),
    ]
    good = [
        track(1),
        {"type": "identify", "anonymousId": "anon", "messageId": "m-2"},
        {"type": "identify", "userId": 42, "messageId": "m-3"},
        {"type": "group", "userId": "u", "groupId": "acct", "messageId": "m-4"},
        {"type": "alias", "userId": "u", "previousId": "anon", "messageId": "m-5"},
        {"type": "page", "userId": "u", "name": "Home", "messageId": "m-6"},
        {"type": "screen", "anonymousId": "a", "messageId": "m-7"},
        track("y" * 98),
    ]
    assert post(segment, [m for _, m in bad] + good).status_code == 200
    assert [(r["reason"], r["message"]) for r in segment.rejected] == bad
    assert segment.message_ids() == [m["messageId"] for m in good]


def test_duplicates_are_counted_not_recorded(segment: t.Any) -> None:
    post(segment, [track(1), track(2), track(1)])
    post(segment, [track(2), track(3)])
    assert segment.message_ids() == ["m-1", "m-2", "m-3"]
    assert segment.duplicates == 2 and segment.duplicate_ids == ["m-1", "m-2"]


def test_records_what_segment_would_store(segment: t.Any) -> None:
    extra = {
        "sentAt": "2026-01-01T00:00:00.000Z",
        "context": {"library": {"name": "lib"}, "ip": "1.2.3.4"},
        "integrations": {"All": False},
    }
    batch = [track(1, context={"ip": "5.6.7.8"}), {"type": "identify", "userId": "u"}]
    assert post(segment, batch, extra=extra).status_code == 200
    first, second = segment.messages
    assert first["context"] == {"library": {"name": "lib"}, "ip": "5.6.7.8"}
    assert second["integrations"] == {"All": False}
    assert first["sentAt"] == "2026-01-01T00:00:00.000Z"
    assert first["receivedAt"].endswith("Z") and len(first["receivedAt"]) == 24
    assert second["messageId"].startswith("standin-")  # Segment sets a missing one


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import", "/v1/import/", "/v1/b"])
def test_batch_aliases(segment: t.Any, path: str) -> None:
    assert post(segment, [track()], path=path).status_code == 200
    assert segment.message_ids() == ["m-1"]


@pytest.mark.parametrize(
    "kind", ["identify", "track", "group", "page", "screen", "alias"]
)
def test_single_message_endpoints(segment: t.Any, kind: str) -> None:
    body = {"type": "bogus", "userId": "u", "event": "E", "groupId": "g",
            "previousId": "p", "messageId": kind, "writeKey": KEY}  # fmt: skip
    assert requests.post(f"{segment.url}/v1/{kind}", json=body).status_code == 200
    (message,) = segment.messages
    assert message["type"] == kind and "writeKey" not in message
    assert requests.post(f"{segment.url}/v1/delete", json=body).status_code == 404


def test_faults_status_times_and_retry_after(segment: t.Any) -> None:
    segment.set_fault(status=429, times=2, retry_after=7)
    answers = [post(segment, [track(n)]) for n in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "7"
    assert answers[0].json()["code"] == "fault"
    assert segment.message_ids() == ["m-2"] and segment.requests == 3
    segment.set_fault(status=503)  # until cleared
    assert [post(segment, [track(9)]).status_code for _ in range(3)] == [503] * 3
    segment.clear_faults()
    assert post(segment, [track(9)]).status_code == 200
    segment.set_fault(status=500, times=0)
    assert post(segment, [track(10)]).status_code == 200


def test_fault_delay(segment: t.Any) -> None:
    segment.set_fault(delay=0.3, times=1)
    started = time.monotonic()
    assert post(segment, [track(1)]).status_code == 200
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert post(segment, [track(2)]).status_code == 200
    assert time.monotonic() - started < 0.3


def test_fault_fail_message_ids(segment: t.Any) -> None:
    segment.set_fault(fail_message_ids=["m-bad"], status=503, times=1)
    assert post(segment, [track(1)]).status_code == 503
    response = post(segment, [track(2), track("bad"), track(3)])
    assert response.status_code == 400 and "message 1" in response.json()["message"]
    assert post(segment, [track(2), track(3)]).status_code == 200
    assert segment.message_ids() == ["m-2", "m-3"]
    segment.clear_faults()
    assert post(segment, [track("bad")]).status_code == 200


def test_a_fault_of_one_write_key_leaves_the_others(segment: t.Any) -> None:
    other = ("wk_other_5678", "")
    segment.set_fault(status=503, write_key="wk_other_5678")
    assert post(segment, [track(1)]).status_code == 200
    data = json.dumps({"batch": [track(2)]})
    headers = {"Content-Type": "application/json"}
    answers = [
        requests.post(segment.url + "/v1/batch", data=data, headers=headers, auth=other)
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [503, 503]
    segment.set_fault(status=500, times=1, write_key="wk_other_5678")
    assert post(segment, [track(3)]).status_code == 200
    assert [
        requests.post(
            segment.url + "/v1/batch", data=data, headers=headers, auth=other
        ).status_code
        for _ in range(2)
    ] == [500, 200]
    segment.set_fault(status=503, write_key="wk_other_5678")
    segment.clear_faults("wk_other_5678")
    assert post(segment, [track(4)], extra={}).status_code == 200
    assert segment.message_ids() == ["m-1", "m-3", "m-2", "m-4"]
    assert requests.post(
        segment.url + "/faults", json={"status": 503, "write_key": KEY}
    ).json()["success"]
    assert post(segment, [track(5)]).status_code == 503
    requests.post(segment.url + "/faults", json={})  # clears every fault
    assert post(segment, [track(5)]).status_code == 200
    assert (
        requests.post(segment.url + "/faults", json={"write_key": ""}).status_code
        == 400
    )


def test_faults_over_http(segment: t.Any) -> None:
    url = segment.url + "/faults"
    assert requests.post(url, json={"status": 500, "times": 1}).json()["success"]
    assert post(segment, [track()]).status_code == 500
    requests.post(url, json={"fail_message_ids": ["m-1"]})
    assert post(segment, [track()]).status_code == 400
    requests.post(url, json={})
    assert post(segment, [track()]).status_code == 200
    for bad in ({"status": 99}, {"times": -1}, {"delay": "x"}, {"nope": 1}, [1],
                {"fail_message_ids": "m-1"}):  # fmt: skip
        answer = requests.post(url, json=bad)
        assert answer.status_code == 400, bad
    assert post(segment, [track(2)]).status_code == 200


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


def test_separate_process() -> None:
    port = free_port()
    command = [sys.executable, "-m", "flask_refiner_segment.testing.standin", "--port",
               str(port), "--write-key", KEY, "--quiet"]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = t.cast(t.IO[str], proc.stdout).readline()
        assert line.strip() == f"Segment stand-in on http://127.0.0.1:{port}"
        url = f"http://127.0.0.1:{port}"
        body = {"batch": [track()]}
        assert (
            requests.post(url + "/v1/batch", json=body, auth=("x", "")).status_code
            == 401
        )
        assert requests.post(url + "/v1/batch", json=body, auth=AUTH).ok
        assert (
            requests.get(url + "/messages").json()["messages"][0]["messageId"] == "m-1"
        )
    finally:
        proc.terminate()
        assert proc.wait(5) == 0
        t.cast(t.IO[str], proc.stdout).close()


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
        max_leaves=20,
    ),
    st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]),
)
def test_load_matches_json_loads(value: t.Any, separators: tuple[str, str]) -> None:
    body = {"sentAt": "x", "batch": value if isinstance(value, list) else [value]}
    for doc in (body, value):
        text = json.dumps(doc, separators=separators, ensure_ascii=False)
        loaded, spans = load_body(text)
        assert json.dumps(loaded) == json.dumps(json.loads(text))
        if doc is body:
            compact = [len(json.dumps(i, separators=separators, ensure_ascii=False))
                       for i in body["batch"]]  # fmt: skip
            assert spans == compact
    for broken in (text[:-1], text + ",", text.replace(":", "", 1)):
        try:
            expected = json.loads(broken)
        except ValueError:
            with pytest.raises(ValueError):
                load_body(broken)
        else:
            assert json.dumps(load_body(broken)[0]) == json.dumps(expected)


def test_a_session_keeps_its_connection_alive_until_the_stand_in_stops() -> None:
    """HTTP/1.1 keep-alive: a client's requests share one connection (as a
    serve job's session does with Segment); stopping the stand-in drops it,
    so the client then finds nothing listening."""
    standin = SegmentStandIn()
    server = serve(standin)
    session = requests.Session()
    try:
        for n in range(3):
            answer = session.post(
                server.url + "/v1/batch", json={"batch": [track(f"m-{n}")]}, auth=AUTH
            )
            assert answer.ok and "close" not in answer.headers.get("Connection", "")
        assert session.get(server.url + "/stats").json()["accepted"] == 3
        assert server.server.accepted == 1
        closing = session.get(server.url + "/stats", headers={"Connection": "close"})
        assert closing.headers["Connection"] == "close"
        session.get(server.url + "/stats")
        assert server.server.accepted == 2  # a new one after the close
    finally:
        server.shutdown()
    with pytest.raises(requests.ConnectionError):
        session.get(server.url + "/stats", timeout=5)
    session.close()


def test_answers_are_not_held_back_by_nagle() -> None:
    """An answer is two writes (headers, then body): with Nagle's algorithm on
    a keep-alive connection the body waits for the client's delayed ACK, tens
    of milliseconds a request, and the stand-in, not the code under test, sets
    the pace. Its connections have ``TCP_NODELAY``."""
    standin = SegmentStandIn()
    server = serve(standin)
    session = requests.Session()
    try:
        assert session.get(server.url + "/stats").ok
        (sock,) = server.server._open
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        session.close()
        server.shutdown()
