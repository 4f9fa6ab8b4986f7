"""The payload, SPEC §1 values: how answers and traits become JSON values, and
dumps, message_size, limit_size and content_hash.
"""

from __future__ import annotations

import collections
import copy
import datetime as dt
import decimal
import enum
import fractions
import hashlib
import json
import types
import uuid

import pytest
from flask_refiner_segment.core.completion import content_hash
from flask_refiner_segment.core.completion import normalize_completion
from flask_refiner_segment.core.messages import dumps
from flask_refiner_segment.core.messages import limit_size
from flask_refiner_segment.core.messages import message_size

from .test_completion import PLUS2
from .test_completion import kwargs


def convert(value):
    """One value through normalize_completion, and the on_convert calls."""
    calls = []
    completion = normalize_completion(
        user_id="u",
        survey={"id": "s"},
        response={"id": "r", "answers": {"v": value}},
        on_convert=calls.append,
    )
    return completion["response"]["answers"]["v"], calls


# -- values (SPEC §1) ------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    PAIR = (1, dt.date(2026, 1, 2))


class Size(enum.IntEnum):
    L = 3


class Mood(str, enum.Enum):
    HAPPY = "happy"


class Odd:
    def __str__(self):
        return "odd!"


class Label(str):
    pass


UID = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(
    "value, expected",
    [
        ("text", "text"),
        ("", ""),
        (Label("sub"), "sub"),
        ("bad \ud800 surrogate", "bad \ufffd surrogate"),
        ("pair \ud83d\ude00", "pair 😀"),
        (0, 0),
        (-7, -7),
        (1.5, 1.5),
        (True, True),
        (False, False),
        (None, None),
        (float("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (decimal.Decimal("10"), 10),
        (decimal.Decimal("10.00"), 10),
        (decimal.Decimal("10.5"), 10.5),
        (decimal.Decimal("-0.25"), -0.25),
        (decimal.Decimal("NaN"), "NaN"),
        (decimal.Decimal("Infinity"), "Infinity"),
        (decimal.Decimal("-Infinity"), "-Infinity"),
        (decimal.Decimal("1E+5000"), "1E+5000"),
        (fractions.Fraction(1, 4), 0.25),
        (dt.datetime(2026, 11, 28, 12, 0, tzinfo=PLUS2), "2026-11-28T10:00:00.000Z"),
        (dt.datetime(2026, 11, 28, 10, 0, 0, 1500), "2026-11-28T10:00:00.001Z"),
        (dt.date(2026, 11, 28), "2026-11-28"),
        (UID, "12345678-1234-5678-1234-567812345678"),
        (Color.RED, "red"),
        (Color.PAIR, [1, "2026-01-02"]),
        (Size.L, 3),
        (Mood.HAPPY, "happy"),
        ([1, "a", None], [1, "a", None]),
        ((1, (2, 3)), [1, [2, 3]]),
        (collections.deque([1, 2]), [1, 2]),
        ({3, 1, 2}, [1, 2, 3]),
        (frozenset({"b", "a"}), ["a", "b"]),
        ({"a", 1, None}, [None, 1, "a"]),
        ({"k": (1,)}, {"k": [1]}),
        (
            {2: "x", None: "y", True: "z", 2.5: "w"},
            {"2": "x", "null": "y", "true": "z", "2.5": "w"},
        ),
        ({Mood.HAPPY: 1, UID: 2}, {"happy": 1, str(UID): 2}),
        ({"\udcff": 1}, {"\ufffd": 1}),
        (collections.OrderedDict(b=1, a=2), {"b": 1, "a": 2}),
        (types.MappingProxyType({"a": 1}), {"a": 1}),
        (
            [{"when": dt.date(2026, 1, 1), "tags": {"b", "a"}, "n": Size.L}],
            [{"when": "2026-01-01", "tags": ["a", "b"], "n": 3}],
        ),
    ],
)
def test_values_converted_without_str_fallback(value, expected):
    result, calls = convert(value)
    # dumps() tells 1 from 1.0 and True from 1, which == does not.
    assert dumps(result) == dumps(expected)
    assert calls == []


@pytest.mark.parametrize(
    "value, expected, type_name",
    [
        (Odd(), "odd!", "Odd"),
        (dt.time(10, 30), "10:30:00", "time"),
        (dt.timedelta(hours=1), "1:00:00", "timedelta"),
        (b"caf\xc3\xa9 \xff", "café \ufffd", "bytes"),
        ({"k": [Odd()]}, {"k": ["odd!"]}, "Odd"),
        ({Odd(): 1}, {"odd!": 1}, "Odd"),
    ],
)
def test_other_values_become_str_and_are_reported(value, expected, type_name):
    result, calls = convert(value)
    assert result == expected
    assert calls == [type_name]


def test_on_convert_is_optional_and_nothing_is_dropped():
    answers = {"a": Odd(), "b": [Odd(), 1], "c": None, "d": {"e": Odd()}}
    completion = normalize_completion(
        user_id="u", survey={"id": "s"}, response={"id": "r", "answers": answers}
    )
    assert completion["response"]["answers"] == {
        "a": "odd!",
        "b": ["odd!", 1],
        "c": None,
        "d": {"e": "odd!"},
    }


def test_values_in_traits_are_converted_too():
    completion = normalize_completion(
        **kwargs(
            user_traits={"plan_price": decimal.Decimal("9.90"), "id": UID},
            account={"id": "a", "traits": {"since": dt.date(2020, 1, 31)}},
        )
    )
    assert completion["user_traits"] == {"plan_price": 9.9, "id": str(UID)}
    assert completion["account"]["traits"] == {"since": "2020-01-31"}


# -- content_hash, dumps, message_size -------------------------------------------


def test_dumps_and_message_size():
    assert (
        dumps({"a": "é", "b": [1, 2.5], "c": None}) == '{"a":"é","b":[1,2.5],"c":null}'
    )
    assert message_size({"a": "é"}) == 10  # {"a":"é"} is 9 characters, é is 2 bytes
    assert message_size({"a": "e"}) == 9


def test_limit_size_is_what_segments_python_library_measures():
    message = {"a": "é", "b": [1, "😀"]}
    assert limit_size(message) == len(json.dumps(message).encode()) == 41
    assert message_size(message) == len(dumps(message).encode()) == 25


def test_content_hash():
    completion = normalize_completion(**kwargs())
    canonical = json.dumps(
        completion, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert content_hash(completion) == hashlib.sha256(canonical.encode()).hexdigest()
    assert (
        content_hash({"a": "é", "b": 1})
        == hashlib.sha256('{"a":"é","b":1}'.encode()).hexdigest()
    )
    assert content_hash({"b": 1, "a": "é"}) == content_hash({"a": "é", "b": 1})
    assert content_hash(json.loads(json.dumps(completion))) == content_hash(completion)
    edited = copy.deepcopy(completion)
    edited["response"]["answers"]["how_likely"] = 8
    assert content_hash(edited) != content_hash(completion)
