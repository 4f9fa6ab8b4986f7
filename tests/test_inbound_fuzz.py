"""Property-based tests of the inbound route (hypothesis).

Thousands of malformed bodies and headers: never a 5xx, always JSON, a
rejected request stores nothing. Then generated *valid* traits of any shape
(unicode, NUL, nesting, big numbers) are stored and read back, on both databases.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from flask_refiner_segment.inbound import queries as api
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from .helpers import examples
from .inbound_support import API_KEY
from .inbound_support import URL
from .inbound_support import close_app
from .inbound_support import counts
from .inbound_support import group
from .inbound_support import identify
from .inbound_support import make_app
from .inbound_support import page
from .inbound_support import post
from .inbound_support import screen
from .inbound_support import segment_headers
from .inbound_support import track

_ids = itertools.count()


@pytest.fixture(scope="module")
def sqlite_app(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Flask]:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db"
    app = make_app(f"sqlite:///{path}")
    yield app
    close_app(app)


def check_answer(app: Flask, response: t.Any, before: dict[str, int]) -> None:
    """Never a 5xx or HTML; a rejected request leaves every table as it was."""
    assert response.status_code < 500 or response.status_code == 501, response.data
    assert response.is_json, response.data[:200]
    body = response.get_json()
    assert isinstance(body, dict)
    if response.status_code >= 400:
        assert body["error"] and body["message"]
        assert counts(app) == before


def valid_messages(n: int) -> list[dict[str, t.Any]]:
    builders = (identify, group, track, page, screen)
    return [
        builders[i % len(builders)](message_id=f"fuzz-{next(_ids)}", user_id=f"u{i}")
        for i in range(n)
    ]


# -- malformed bodies ------------------------------------------------------------

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
not_object = json_scalars | st.lists(json_scalars, max_size=3)
not_string = (
    st.none() | st.booleans() | st.floats() | st.lists(json_scalars, max_size=2)
)
bad_time = (
    st.text(st.characters(exclude_categories=("Nd",)), max_size=30) | st.integers()
)


def _deep(depth: int) -> t.Any:
    value: t.Any = 1
    for _ in range(depth):
        value = {"k": value}
    return value


# Each breaks one message so it must be rejected with 400.
MUTATIONS: dict[str, st.SearchStrategy[t.Callable[[dict[str, t.Any]], t.Any]]] = {
    "not-object": not_object.map(lambda v: lambda m: v),
    "no-type": st.just(lambda m: {k: v for k, v in m.items() if k != "type"}),
    "type": (not_string | st.just("") | st.integers()).map(
        lambda v: lambda m: {**m, "type": v}
    ),
    "user": (st.floats() | st.booleans() | st.lists(st.text(), min_size=1)).map(
        lambda v: lambda m: {**m, "userId": v}
    ),
    "long-user": st.integers(256, 400).map(
        lambda n: lambda m: {**m, "userId": "u" * n}
    ),
    "timestamp": st.tuples(
        st.sampled_from(["timestamp", "originalTimestamp", "receivedAt", "sentAt"]),
        bad_time,
    ).map(lambda kv: lambda m: {**m, kv[0]: kv[1]}),
    "traits": not_object.filter(lambda v: v is not None).map(
        lambda v: lambda m: {**identify(m["messageId"]), "traits": v}
    ),
    "properties": not_object.filter(lambda v: v is not None).map(
        lambda v: lambda m: {**track(m["messageId"]), "properties": v}
    ),
    "event": (not_string | st.just("")).map(
        lambda v: lambda m: {**track(m["messageId"]), "event": v}
    ),
    "group": st.just(
        lambda m: {k: v for k, v in group(m["messageId"]).items() if k != "groupId"}
    ),
    "previous": (not_string.filter(lambda v: v is not None) | st.just(None)).map(
        lambda v: (
            lambda m: (
                {"type": "alias", "userId": "u", "previousId": v}
                if v is not None
                else {"type": "alias", "userId": "u"}
            )
        )
    ),
    "message-id": st.dictionaries(st.text(max_size=3), json_scalars, max_size=2).map(
        lambda v: lambda m: {**m, "messageId": v}
    ),
    "deep": st.integers(66, 300).map(
        lambda d: lambda m: {**track(m["messageId"]), "properties": _deep(d)}
    ),
    "long-key": st.integers(256, 300).map(
        lambda n: lambda m: {**identify(m["messageId"]), "traits": {"k" * n: 1}}
    ),
}


@st.composite
def broken_batches(draw: st.DrawFn) -> bytes:
    """A batch of valid messages with one broken message somewhere."""
    messages = valid_messages(draw(st.integers(0, 4)))
    victim = valid_messages(1)[0]
    mutation = draw(st.sampled_from(sorted(MUTATIONS)))
    broken = draw(MUTATIONS[mutation])(victim)
    messages.insert(draw(st.integers(0, len(messages))), broken)
    shape = draw(st.sampled_from(["array", "batch", "single"]))
    if shape == "single" and isinstance(broken, dict):
        doc: t.Any = broken
    elif shape == "batch":
        doc = {"batch": messages}
    else:
        doc = messages
    text = json.dumps(doc, allow_nan=True)
    return text.encode()


garbage = (
    st.binary(max_size=200)
    | st.text(max_size=200).map(str.encode)
    | json_values.map(lambda v: json.dumps(v, allow_nan=True).encode())
    | st.sampled_from([b"[", b"{", b'{"batch":', b"nul", b"\xef\xbb\xbf", b"[" * 5000])
)


@settings(
    max_examples=examples(500),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(body=broken_batches())
def test_broken_message_in_a_batch_is_400_and_stores_nothing(sqlite_app, body):
    before = counts(sqlite_app)
    response = post(sqlite_app, body)
    assert response.status_code == 400, (
        response.status_code,
        response.get_json(),
        body,
    )
    check_answer(sqlite_app, response, before)
    assert response.get_json()["message"].startswith(("message ", "Malformed JSON"))


@settings(
    max_examples=examples(400),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(body=garbage)
def test_garbage_bodies_never_5xx(sqlite_app, body):
    before = counts(sqlite_app)
    response = post(sqlite_app, body)
    check_answer(sqlite_app, response, before)


latin1 = st.text(
    st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
    max_size=60,
)
authorizations = (
    latin1
    | latin1.map(lambda s: "Basic " + s)
    | st.text(max_size=40).map(
        lambda s: "Basic " + base64.b64encode(s.encode()).decode()
    )
    | latin1.map(lambda s: "Bearer " + s)
    | st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode())
)


@settings(
    max_examples=examples(300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    authorization=st.none() | authorizations,
    content_type=st.none() | latin1,
    signature=st.none() | latin1,
    extra=st.dictionaries(
        st.sampled_from(
            ["X-Segment-Settings", "Content-Encoding", "Accept", "User-Agent"]
        ),
        latin1,
    ),
)
def test_bad_headers_are_401_and_store_nothing(
    sqlite_app, authorization, content_type, signature, extra
):
    headers = dict(extra)
    if authorization is not None:
        if API_KEY in authorization or API_KEY in _b64_text(authorization):
            return
        headers["Authorization"] = authorization
    if content_type is not None:
        headers["Content-Type"] = content_type
    if signature is not None:
        headers["X-Signature"] = signature
    before = counts(sqlite_app)
    response = post(sqlite_app, valid_messages(2), headers)
    assert response.status_code == 401
    check_answer(sqlite_app, response, before)


def _b64_text(header: str) -> str:
    try:
        return base64.b64decode(header.partition(" ")[2]).decode("utf-8", "replace")
    except ValueError:
        return ""


def test_other_methods_and_paths_answer_json(sqlite_app):
    client = sqlite_app.test_client()
    for method in ("get", "put", "patch", "delete"):
        response = getattr(client, method)(URL, data=b"{}", headers=segment_headers())
        assert response.status_code == 405 and response.is_json


# -- valid data of any shape is stored ---------------------------------------------

any_text = st.text(
    st.characters(codec="utf-8") | st.sampled_from(["\x00", "\ud800"]), max_size=12
)
any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3)
    ),
    max_leaves=10,
)


def _clean(value: t.Any) -> t.Any:
    """What the database can hold: NUL and lone surrogates become U+FFFD."""
    if isinstance(value, str):
        return "".join(
            "\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c for c in value
        )
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def same(a: t.Any, b: t.Any) -> bool:
    """JSON equality; PostgreSQL's numeric may turn 1e300 into an integer."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b or a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or math.isclose(float(a), float(b), rel_tol=1e-15, abs_tol=0.0)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.fixture
def any_db_app(database_url: str) -> t.Iterator[Flask]:
    app = make_app(database_url)
    yield app
    close_app(app)


@settings(
    max_examples=examples(120),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    traits=st.dictionaries(any_text, any_json, max_size=6),
    properties=st.dictionaries(any_text, any_json, max_size=4),
)
def test_valid_traits_of_any_shape_round_trip(any_db_app, traits, properties):
    user = f"user-{next(_ids)}"
    messages = [
        identify(f"i-{user}", user, traits=traits),
        track(f"t-{user}", user, event="Fuzzed", properties=properties),
    ]
    response = post(any_db_app, json.dumps(messages).encode())
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["stored"] == 2
    with any_db_app.app_context():
        profile = api.get_profile(user)
    assert profile is not None
    assert same(profile["traits"], _clean(traits))
    assert same(profile["events"][0]["properties"], _clean(properties))
