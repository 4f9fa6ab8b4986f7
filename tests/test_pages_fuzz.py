"""Hostile input through every page of the extension, on SQLite and PostgreSQL.

Hypothesis drives the settings form, the webhook-secret form, the buttons
(test, retry-failed, rotate-key), the segment rule editor, the rule preview and
the inbound route with junk: NUL and control characters, invalid UTF-8 (lone
surrogates as ``%ED%A0%80``), huge strings, many and repeated values, missing
fields, arbitrary JSON (huge integers, NaN, deep nesting). The pages must never
answer 5xx, and a page must still render after anything they accepted.

Form bodies are built by hand (``urlencode`` can't carry invalid UTF-8), so
every byte the client sends is chosen here. One app per test function; the
examples share it, as requests of a real deployment share a database.

This file holds the senders and hostile strategies the page fuzz tests share,
and fuzzes the inbound route; the settings page and its buttons are fuzzed in
test_pages_fuzz_settings.py, the segment rule editor and its preview in
test_pages_fuzz_segments.py.
"""

from __future__ import annotations

import itertools
import json
import math
import typing as t
from urllib.parse import quote_from_bytes

import pytest
from flask import Flask
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from .helpers import examples
from .inbound_support import API_KEY
from .inbound_support import counts
from .inbound_support import group
from .inbound_support import identify
from .inbound_support import post as inbound_post
from .inbound_support import track

URL = "/integrations/segment/"
SEGMENTS = URL + "segments"
ACTIONS = ("test", "retry-failed", "rotate-key")
FORM = "application/x-www-form-urlencoded"


def fuzz(count: int) -> settings:
    """One app per test function, shared by its examples; no deadline (other
    test runs share the machine)."""
    return settings(
        max_examples=examples(count),
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
        ],
    )


_ids = itertools.count()

Pair = tuple[t.Any, t.Any]


# -- sending ------------------------------------------------------------------


def _bytes(value: t.Any) -> bytes:
    """Bytes as they are; text as UTF-8, lone surrogates as their (invalid)
    UTF-8 bytes, so ``"\\ud800"`` goes on the wire as ``%ED%A0%80``."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


def form_body(pairs: t.Iterable[Pair]) -> bytes:
    """An ``application/x-www-form-urlencoded`` body carrying any bytes."""
    return "&".join(
        quote_from_bytes(_bytes(k), safe="")
        + "="
        + quote_from_bytes(_bytes(v), safe="")
        for k, v in pairs
    ).encode("ascii")


def query(value: t.Any) -> str:
    return quote_from_bytes(_bytes(value), safe="")


def post_form(client: t.Any, path: str, pairs: t.Iterable[Pair]) -> t.Any:
    return client.post(path, data=form_body(pairs), content_type=FORM)


def no_500(response: t.Any, what: t.Any = "") -> t.Any:
    body = response.get_data()
    assert response.status_code < 500, (response.status_code, what, body[-3000:])
    return response


def page_is_200(client: t.Any, path: str, what: t.Any = "") -> None:
    response = client.get(path)
    body = response.get_data()
    assert response.status_code == 200, (response.status_code, path, what, body[-3000:])


def allow(app: Flask) -> None:
    app.extensions["refiner_segment"].owner.settings_guard(lambda: True)


def weighted(
    *options: tuple[int, st.SearchStrategy[t.Any]],
) -> st.SearchStrategy[t.Any]:
    """``one_of`` with weights (``a | b`` flattens a nested ``one_of`` into
    branches of equal weight, so a rich ``b`` would drown ``a``)."""
    pool = [strategy for weight, strategy in options for _ in range(weight)]
    return st.integers(0, len(pool) - 1).flatmap(lambda i: pool[i])


# -- hostile text ---------------------------------------------------------------

SPECIAL = [
    "\x00", "\x01", "\x1f", "\x7f", "\n", "\r", "\t", "\x0b", "\x0c", " ", "\xa0",
    "\ud800", "\udfff", "\ud83d", "\ufffd", "\ufeff", "\u202e", "\u2028", "\U0001f600",
    "%", "&", "=", "+", ";", "#", "?", "/", "\\", '"', "'", "<", ">", "{", "}", "[",
    "]", ".", "..", "$", "*", ",", "é", "ß", "İ", "{{ 7*7 }}", "<script>", "%00",
]  # fmt: skip
pieces = st.characters() | st.sampled_from(SPECIAL)


def texts(max_size: int, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.lists(pieces, min_size=min_size, max_size=max_size).map("".join)


short_text = texts(30)
huge_text = st.builds(
    lambda c, n: c * n,
    st.sampled_from(["a", "\x00", "é", "\ud800", " ", "\U0001f600", ","]),
    st.integers(190, 260) | st.integers(990, 1010) | st.integers(19_990, 40_000),
)
raw_bytes = st.binary(max_size=40)
hostile = short_text | short_text | huge_text | raw_bytes


def _insert(value: t.Any, char: str, from_end: int) -> t.Any:
    if isinstance(value, bytes):
        return value
    at = max(0, len(value) - from_end)
    return value[:at] + char + value[at:]


def tainted(valid: st.SearchStrategy[t.Any]) -> st.SearchStrategy[t.Any]:
    """A valid value with one hostile character slipped in (near the end often:
    that is where a stored hint or a trimmed copy comes from)."""
    return st.builds(
        _insert,
        valid,
        st.sampled_from(["\x00", "\ud800", "\x7f", "\n"]) | st.sampled_from(SPECIAL),
        st.integers(0, 4) | st.integers(0, 100),
    )


def broken_field(
    name: str, valid: st.SearchStrategy[t.Any]
) -> st.SearchStrategy[list[Pair]]:
    """``name`` tainted, hostile, left out, or repeated."""
    value = weighted((2, valid), (1, tainted(valid)), (1, hostile))
    return st.one_of(
        tainted(valid).map(lambda v: [(name, v)]),
        tainted(valid).map(lambda v: [(name, v)]),
        hostile.map(lambda v: [(name, v)]),
        st.just([]),
        st.lists(value, min_size=2, max_size=4).map(lambda vs: [(name, v) for v in vs]),
    )


@st.composite
def form_pairs(
    draw: st.DrawFn, fields: dict[str, st.SearchStrategy[t.Any]]
) -> list[Pair]:
    """A valid form with a few fields broken (or all of them), unknown fields
    added, in any order."""
    broken = draw(st.sets(st.sampled_from(sorted(fields)), max_size=3))
    if draw(st.integers(0, 9)) == 0:
        broken = set(fields)
    pairs: list[Pair] = []
    for name, valid in fields.items():
        if name in broken:
            pairs += draw(broken_field(name, valid))
        else:
            pairs.append((name, draw(valid)))
    pairs += draw(st.lists(st.tuples(hostile, hostile), max_size=2))
    return draw(st.permutations(pairs))


survey_id = st.from_regex(r"\A[a-z0-9-]{1,12}\Z") | short_text
SETTINGS_FIELDS: dict[str, st.SearchStrategy[t.Any]] = {
    "write_key": st.sampled_from(["", "wk_live_9f3a", "  wk_padded_1234  "])
    | st.from_regex(r"\Awk_[A-Za-z0-9]{1,20}\Z"),
    "enabled": st.sampled_from(["y", "", "on", "false", "0"]),
    "region": st.sampled_from(["us", "eu", "custom"]),
    "custom_api_host": st.sampled_from(
        [
            "https://dataplane.example.com",
            "https://dataplane.example.com/v1/",
            "https://93.184.216.34:8443",
            "https://[2606:2800:220:1::]",
            "http://127.0.0.1:1",
            "https://localhost",
            "https://0x7f.1",
            "https://u:p@dataplane.example.com",
            "https://dataplane.example.com:99999",
            "",
        ]
    ),
    "track_event": st.sampled_from(["Survey Completed", "x", "Événement ✓"]),
    "trait_prefix": st.sampled_from(["refiner_", "", "a1", "_"]),
    "send_all": st.sampled_from(["all", "selected"]),
    "other_surveys": st.sampled_from(["", "nps-1\nnps-2", "a, b,,c", " \n , "]),
}


@st.composite
def settings_pairs(draw: st.DrawFn) -> list[Pair]:
    """A settings form as a browser could never send it (or sometimes could)."""
    pairs = draw(form_pairs(SETTINGS_FIELDS))
    surveys = draw(
        st.one_of(
            st.lists(survey_id, max_size=6),
            st.lists(survey_id | tainted(survey_id) | hostile, max_size=4),
            st.integers(900, 1100).map(lambda n: [f"s{i}" for i in range(n)]),
        )
    )
    return pairs + [("surveys", s) for s in surveys]


# -- hostile JSON (the segment rule editor and the inbound route) -----------

huge_ints = st.sampled_from(
    [10**400, -(10**400), 2**31, 2**31 - 1, 2**63, 2**64, -(2**63) - 1, 10**308]
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats()
    | st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e308])
    | st.sampled_from(["pro", "2026-01-01", "2026-13-45T99:00", ""])
    | short_text
)


def _deep(depth: int, leaf: t.Any = 1) -> t.Any:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def _dumps(value: t.Any, ascii_only: bool) -> str:
    return json.dumps(value, allow_nan=True, ensure_ascii=ascii_only)


# -- the inbound route, on both databases ---------------------------------------
# tests/test_inbound_fuzz.py fuzzes bodies and headers on SQLite only; this
# sends hostile messages to PostgreSQL too.

any_text = texts(12) | huge_text
hostile_json = st.recursive(
    json_scalars | any_text,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3)
    ),
    max_leaves=10,
)
FIELDS = [
    "type", "userId", "anonymousId", "messageId", "event", "groupId", "previousId",
    "timestamp", "traits", "properties", "context", "name", "sentAt",
]  # fmt: skip


@st.composite
def inbound_bodies(draw: st.DrawFn) -> bytes:
    n = next(_ids)
    builders = [identify, track, group]
    messages = [
        draw(st.sampled_from(builders))(f"pf-{n}-{i}", f"u{n}-{i}")
        for i in range(draw(st.integers(1, 3)))
    ]
    for message in messages:
        for _ in range(draw(st.integers(0, 3))):
            field = draw(st.sampled_from(FIELDS) | any_text)
            message[field] = draw(hostile_json | st.integers(50, 300).map(_deep))
        if draw(st.booleans()):
            traits = message.setdefault("traits", {})
            if isinstance(traits, dict):
                traits.update(draw(st.dictionaries(any_text, hostile_json, max_size=3)))
    shape = draw(st.sampled_from(["array", "batch", "single"]))
    doc = {"batch": messages} if shape == "batch" else messages
    text = _dumps(doc if shape != "single" else messages[0], draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


@pytest.fixture
def inbound_app(make_app: t.Callable[..., Flask]) -> Flask:
    return make_app(REFINER_SEGMENT_INBOUND_API_KEY=API_KEY)


@fuzz(60)
@given(body=inbound_bodies() | st.binary(max_size=200))
def test_inbound_hostile_messages_never_500(inbound_app: Flask, body: bytes) -> None:
    before = counts(inbound_app)
    response = inbound_post(inbound_app, body)
    # 501 is the route's answer to a message type it does not support.
    assert response.status_code < 500 or response.status_code == 501, (
        response.status_code,
        body[:3000],
        response.get_data()[:3000],
    )
    assert response.is_json
    if response.status_code >= 400:
        assert counts(inbound_app) == before
