"""The Segment stand-in over real HTTP: auth, validation and what it records.

The request helpers live here; faults are tested in test_standin_faults.py,
the control endpoints and the page in test_standin_pages.py, serving (a
separate process, keep-alive, TCP_NODELAY) in test_standin_server.py.
"""

from __future__ import annotations

import json
import typing as t

import pytest
import requests
from flask_refiner_segment.testing.standin import SegmentStandIn
from flask_refiner_segment.testing.standin import serve
from flask_refiner_segment.testing.standin_requests import load_body
from hypothesis import given
from hypothesis import strategies as st

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
