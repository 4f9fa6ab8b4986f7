"""The payload: SPEC §1 validation and conversion, SPEC §2 messages."""

from __future__ import annotations

import collections
import copy
import datetime as dt
import decimal
import enum
import fractions
import hashlib
import json
import re
import time
import types
import uuid
from unittest.mock import ANY

import pytest
from flask_refiner_segment.core.completion import InvalidCompletion
from flask_refiner_segment.core.completion import content_hash
from flask_refiner_segment.core.completion import normalize_completion
from flask_refiner_segment.core.completion import nps_group
from flask_refiner_segment.core.messages import MAX_BATCH_BYTES
from flask_refiner_segment.core.messages import MAX_BATCH_MESSAGES
from flask_refiner_segment.core.messages import BuildOptions
from flask_refiner_segment.core.messages import MessageTooLarge
from flask_refiner_segment.core.messages import build_messages
from flask_refiner_segment.core.messages import chunk_batches
from flask_refiner_segment.core.messages import dumps
from flask_refiner_segment.core.messages import limit_size
from flask_refiner_segment.core.messages import message_size
from flask_refiner_segment.core.messages import slugify
from flask_refiner_segment.core.messages import trait_slugs
from hypothesis import event
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from .helpers import examples

UTC = dt.timezone.utc
PLUS2 = dt.timezone(dt.timedelta(hours=2))
WHEN = dt.datetime(2026, 11, 28, 10, 30, 0, 123456, tzinfo=UTC)
TS = "2026-11-28T10:30:00.123Z"
OPTIONS = BuildOptions(library_version="1.2.3")
CONTEXT = {
    "library": {"name": "flask-refiner-segment", "version": "1.2.3"},
    "integration": {"name": "refiner", "version": "1.2.3"},
}
MESSAGE_ID = re.compile(r"rs-(identify|group|track)-[0-9a-f]{48}")


def kwargs(**change):
    """The SPEC §1 example signal, with top-level arguments replaced."""
    base = {
        "user_id": "u-123",
        "survey": {
            "id": "nps-2026",
            "name": "NPS Survey",
            "questions": [
                {
                    "key": "how_likely",
                    "text": "How likely are you to recommend us?",
                    "type": "nps",
                    "trait": None,
                    "scope": "user",
                },
                {"key": "team_size", "scope": "account"},
            ],
        },
        "response": {
            "id": "r-789",
            "completed_at": WHEN,
            "answers": {
                "how_likely": 9,
                "role": "Engineer",
                "tools": ["Segment", "Jira"],
                "team_size": "11-50",
            },
        },
        "account": {"id": "acct-42", "traits": {"name": "Acme", "plan": "pro"}},
        "user_traits": {"email": "ann@example.com", "name": "Ann"},
    }
    return {**base, **change}


def make(answers=None, questions=(), account=None, user_traits=None, **response):
    """A normalized completion with the given answers and question metadata."""
    return normalize_completion(
        user_id="u-1",
        survey={"id": "s-1", "name": "Survey", "questions": list(questions)},
        response={"id": "r-1", "completed_at": WHEN, "answers": answers or {}}
        | response,
        account=account,
        user_traits=user_traits,
    )


def build(completion, options=OPTIONS, **kw):
    return {m["type"]: m for m in build_messages(completion, options, **kw)}


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


# -- normalize_completion: the output shape ------------------------------------


def test_normalize_spec_example():
    assert normalize_completion(**kwargs()) == {
        "user_id": "u-123",
        "survey": {
            "id": "nps-2026",
            "name": "NPS Survey",
            "questions": [
                {
                    "key": "how_likely",
                    "text": "How likely are you to recommend us?",
                    "type": "nps",
                    "trait": None,
                    "scope": "user",
                },
                {
                    "key": "team_size",
                    "text": None,
                    "type": None,
                    "trait": None,
                    "scope": "account",
                },
            ],
        },
        "response": {
            "id": "r-789",
            "completed_at": TS,
            "answers": {
                "how_likely": 9,
                "role": "Engineer",
                "tools": ["Segment", "Jira"],
                "team_size": "11-50",
            },
        },
        "account": {"id": "acct-42", "traits": {"name": "Acme", "plan": "pro"}},
        "user_traits": {"email": "ann@example.com", "name": "Ann"},
    }


def test_normalize_minimal_defaults():
    completion = normalize_completion(
        user_id=123, survey={"id": 7}, response={"id": 8, "answers": {}}
    )
    assert completion == {
        "user_id": "123",
        "survey": {"id": "7", "name": None, "questions": []},
        "response": {"id": "8", "completed_at": None, "answers": {}},
        "account": None,
        "user_traits": {},
    }


def test_normalize_ids_as_str():
    uid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    completion = normalize_completion(
        user_id=uid,
        survey={"id": 1, "name": 2},
        response={"id": uid, "answers": {}},
        account={"id": 42},
    )
    assert completion["user_id"] == completion["response"]["id"] == str(uid)
    assert completion["survey"] == {"id": "1", "name": "2", "questions": []}
    assert completion["account"] == {"id": "42", "traits": {}}


@pytest.mark.parametrize(
    "account",
    [None, {}, {"id": None}, {"id": ""}, {"id": "  "}, {"traits": {"name": "Acme"}}],
)
def test_account_without_id_is_none(account):
    assert normalize_completion(**kwargs(account=account))["account"] is None


def test_questions_normalized():
    class Kind(enum.Enum):
        NPS = "NPS"

    class Lazy:
        def __str__(self):
            return "Translated text"

    questions = [
        {"key": "a", "type": Kind.NPS, "text": Lazy(), "extra": "ignored"},
        {"key": "b", "type": " Rating ", "trait": " ", "scope": None},
        {"key": "c", "type": "", "trait": "Company Size", "scope": "account"},
    ]
    survey = {"id": "s", "questions": tuple(questions)}
    completion = normalize_completion(**kwargs(survey=survey))
    assert completion["survey"]["questions"] == [
        {
            "key": "a",
            "text": "Translated text",
            "type": "nps",
            "trait": None,
            "scope": "user",
        },
        {"key": "b", "text": None, "type": "rating", "trait": None, "scope": "user"},
        {
            "key": "c",
            "text": None,
            "type": None,
            "trait": "Company Size",
            "scope": "account",
        },
    ]


def test_input_is_copied_not_shared():
    args = kwargs()
    completion = normalize_completion(**args)
    args["response"]["answers"]["tools"].append("Excel")
    args["user_traits"]["email"] = "changed"
    assert completion["response"]["answers"]["tools"] == ["Segment", "Jira"]
    assert completion["user_traits"]["email"] == "ann@example.com"


# -- normalize_completion: every reason to refuse ------------------------------


def nested(levels):
    value: object = 0
    for _ in range(levels):
        value = [value]
    return value


def _with(section, **change):
    base = kwargs()[section]
    return {section: {**base, **change}}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"user_id": None}, "user_id is missing"),
        ({"user_id": ""}, "user_id is empty"),
        ({"user_id": "   "}, "user_id is empty"),
        ({"user_id": True}, "user_id must be a str, int or UUID, got bool"),
        ({"user_id": 1.5}, "user_id must be a str, int or UUID, got float"),
        ({"user_id": ["u"]}, "user_id must be a str, int or UUID, got list"),
        ({"survey": "nps"}, "survey must be a mapping, got str"),
        ({"survey": None}, "survey must be a mapping, got NoneType"),
        ({"survey": {"name": "x"}}, "survey id is missing"),
        ({"survey": {"id": ""}}, "survey id is empty"),
        ({"survey": {"id": False}}, "survey id must be a str, int or UUID, got bool"),
        ({"response": None}, "response must be a mapping, got NoneType"),
        ({"response": {"answers": {}}}, "response id is missing"),
        ({"response": {"id": "", "answers": {}}}, "response id is empty"),
        (
            {"response": {"id": 1.0, "answers": {}}},
            "response id must be a str, int or UUID, got float",
        ),
        (
            {"response": {"id": "r"}},
            "response answers must be a mapping, got NoneType",
        ),
        (
            _with("response", answers=["a", "b"]),
            "response answers must be a mapping, got list",
        ),
        (
            _with("survey", questions="how_likely"),
            "survey questions must be a list, got str",
        ),
        (
            _with("survey", questions={"key": "a"}),
            "survey questions must be a list, got dict",
        ),
        (_with("survey", questions=["a"]), "survey question 0 must be a mapping"),
        (
            _with("survey", questions=[{"key": "a"}, {"text": "b"}]),
            "survey question 1 needs a str 'key', got NoneType",
        ),
        (
            _with("survey", questions=[{"key": 1}]),
            "survey question 0 needs a str 'key', got int",
        ),
        (
            _with("survey", questions=[{"key": "a"}, {"key": "a"}]),
            "survey question key 'a' appears twice",
        ),
        (
            _with("survey", questions=[{"key": "a", "scope": "team"}]),
            "survey question 'a': scope must be 'user' or 'account', got 'team'",
        ),
        (
            _with("survey", questions=[{"key": "a", "type": 5}]),
            "survey question 'a': type must be a str, got int",
        ),
        (
            _with("survey", questions=[{"key": "a", "trait": ["x"]}]),
            "survey question 'a': trait must be a str, got list",
        ),
        ({"account": "acct-42"}, "account must be a mapping, got str"),
        (
            {"account": {"id": "a", "traits": ["x"]}},
            "account traits must be a mapping, got list",
        ),
        ({"account": {"traits": "x"}}, "account traits must be a mapping, got str"),
        ({"account": {"id": 4.2}}, "account id must be a str, int or UUID, got float"),
        ({"user_traits": ["x"]}, "user_traits must be a mapping, got list"),
        (
            _with("response", completed_at=1764325800),
            "response completed_at must be a datetime or an ISO-8601 string, got int",
        ),
        (
            _with("response", completed_at=dt.date(2026, 11, 28)),
            "response completed_at must be a datetime or an ISO-8601 string, got date",
        ),
        (
            _with("response", completed_at="yesterday"),
            "response completed_at is not an ISO-8601 date-time: 'yesterday'",
        ),
        (
            _with("response", completed_at=""),
            "response completed_at is not an ISO-8601 date-time: ''",
        ),
        (
            _with("response", completed_at=dt.datetime(1, 1, 1, tzinfo=PLUS2)),
            "response completed_at is out of range",
        ),
        (
            _with("response", answers={1: "a", "1": "b"}),
            "response answers: the keys 1 and '1' both become '1'",
        ),
        (
            {"user_traits": {"n": 10**5000}},
            "user_traits: an integer with more than 4000 digits",
        ),
        (
            {"account": {"id": "a", "traits": {"x": nested(64)}}},
            "account traits: values nested more than 64 levels deep",
        ),
    ],
)
def test_invalid_completion_reasons(change, reason):
    with pytest.raises(InvalidCompletion) as info:
        normalize_completion(**kwargs(**change))
    assert str(info.value) == reason
    assert isinstance(info.value, ValueError)


def test_nesting_up_to_the_limit_is_fine():
    completion = normalize_completion(**kwargs(user_traits={"x": nested(63)}))
    assert completion["user_traits"]["x"] == nested(63)


def test_reference_cycle_is_refused_not_recursing():
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(InvalidCompletion, match="nested more than 64 levels"):
        normalize_completion(**kwargs(response={"id": "r", "answers": {"x": loop}}))


# -- completed_at ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (dt.datetime(2026, 11, 28, 12, 30, tzinfo=PLUS2), "2026-11-28T10:30:00.000Z"),
        (dt.datetime(2026, 11, 28, 10, 30), "2026-11-28T10:30:00.000Z"),
        (dt.datetime(2026, 11, 28, 10, 30, 0, 999999), "2026-11-28T10:30:00.999Z"),
        ("2026-11-28T12:30:00+02:00", "2026-11-28T10:30:00.000Z"),
        ("2026-11-28T10:30:00Z", "2026-11-28T10:30:00.000Z"),
        ("2026-11-28T10:30:00.123456", "2026-11-28T10:30:00.123Z"),
        ("2026-11-28 10:30:00.5z", "2026-11-28T10:30:00.500Z"),
        ("2026-11-28", "2026-11-28T00:00:00.000Z"),
        (None, None),
    ],
)
def test_completed_at(value, expected):
    completion = normalize_completion(
        **kwargs(response={"id": "r", "completed_at": value, "answers": {}})
    )
    assert completion["response"]["completed_at"] == expected


def test_no_completed_at_means_no_timestamp():
    completion = make(answers={"a": 1}, completed_at=None, account={"id": "x"})
    messages = build_messages(completion, OPTIONS)
    assert [m["type"] for m in messages] == ["identify", "group", "track"]
    assert all("timestamp" not in m for m in messages)
    assert messages[0]["traits"]["refiner_last_survey_completed_at"] is None
    assert messages[-1]["properties"]["completed_at"] is None


def test_timestamp_on_every_message():
    messages = build_messages(normalize_completion(**kwargs()), OPTIONS)
    assert [m["timestamp"] for m in messages] == [TS, TS, TS]


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


# -- slugs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, slug",
    [
        ("how_likely", "how_likely"),
        ("How likely?", "how_likely"),
        ("What is your job role?", "what_is_your_job_role"),
        ("  --Team   Size--  ", "team_size"),
        ("NPS_Score", "nps_score"),
        ("a.b/c", "a_b_c"),
        ("Q1: Rate us (1-5)!", "q1_rate_us_1_5"),
        ("x\ny\tz", "x_y_z"),
        ("__a__b__", "a_b"),
        ("___", ""),
        ("!!!", ""),
        ("", ""),
        ("Größe", "größe"),
        ("Café Crème", "café_crème"),
        ("Cafe\u0301", "café"),  # decomposed é becomes the composed one
        ("ＮＰＳ　Score", "nps_score"),  # full-width letters and space
        ("満足度 (1-5)", "満足度_1_5"),
        ("हिंदी भाषा", "हिंदी_भाषा"),  # vowel signs are kept in the word
        ("rating 👍 today", "rating_today"),
        ("№ 5", "no_5"),
    ],
)
def test_slugify(text, slug):
    assert slugify(text) == slug


@pytest.mark.parametrize(
    "questions, answer_keys, expected",
    [
        # collisions: _2, _3 in question order, whatever the answer order
        (
            [{"key": "Role"}, {"key": "role"}, {"key": "ROLE!"}],
            ["ROLE!", "role", "Role", "extra"],
            {"Role": "role", "role": "role_2", "ROLE!": "role_3", "extra": "extra"},
        ),
        # keys without a question come after, in answer order
        ([], ["b!", "B", "a"], {"b!": "b", "B": "b_2", "a": "a"}),
        (
            [{"key": "z"}],
            ["y", "z", "Z?"],
            {"z": "z", "y": "y", "Z?": "z_2"},
        ),
        # an unanswered question still holds its slug
        ([{"key": "Role"}, {"key": "role"}], ["role"], {"role": "role_2"}),
        # custom trait names: verbatim when a plain identifier, else slugified
        ([{"key": "q1", "trait": "npsScore"}], ["q1"], {"q1": "npsScore"}),
        ([{"key": "q1", "trait": "_private_"}], ["q1"], {"q1": "_private_"}),
        ([{"key": "q1", "trait": "Company Size"}], ["q1"], {"q1": "company_size"}),
        ([{"key": "q1", "trait": "!!!"}], ["q1"], {"q1": "answer"}),
        ([{"key": "q1", "trait": None}], ["q1"], {"q1": "q1"}),
        # collisions ignore case (warehouses fold it)
        (
            [{"key": "q1", "trait": "Role"}, {"key": "role"}],
            ["role", "q1"],
            {"q1": "Role", "role": "role_2"},
        ),
        (
            [{"key": "role"}, {"key": "q1", "trait": "Role"}],
            ["q1", "role"],
            {"role": "role", "q1": "Role_2"},
        ),
        # fixed trait names are never taken by an answer
        (
            [],
            ["last_survey_id", "Last Survey Name", "nps_score", "NPS group", "x"],
            {
                "last_survey_id": "last_survey_id_2",
                "Last Survey Name": "last_survey_name_2",
                "nps_score": "nps_score_2",
                "NPS group": "nps_group_2",
                "x": "x",
            },
        ),
        (
            [{"key": "q", "trait": "last_survey_completed_at"}],
            ["q"],
            {"q": "last_survey_completed_at_2"},
        ),
        # track properties only clash when the prefix would make them equal
        (
            [],
            ["survey_id", "answers"],
            {"survey_id": "survey_id", "answers": "answers"},
        ),
        # empty slugs are "answer"
        (
            [],
            ["!!!", "???", "answer"],
            {"!!!": "answer", "???": "answer_2", "answer": "answer_3"},
        ),
        # a suffix that is taken is skipped
        ([], ["a", "a_2", "A"], {"a": "a", "a_2": "a_2", "A": "a_3"}),
    ],
)
def test_trait_slugs(questions, answer_keys, expected):
    slugs = trait_slugs(questions, answer_keys)
    assert slugs == expected
    assert list(slugs) == list(expected)  # question order, then answer order


@pytest.mark.parametrize(
    "prefix, keys, expected",
    [
        (
            "",
            ["survey_id", "answers", "truncated_answers", "x"],
            ["survey_id_2", "answers_2", "truncated_answers_2", "x"],
        ),
        ("refiner_", ["survey_id", "response_id"], ["survey_id", "response_id"]),
        ("survey_", ["id", "name", "x"], ["id_2", "name_2", "x"]),
    ],
)
def test_trait_slugs_avoid_fixed_properties_for_the_prefix(prefix, keys, expected):
    assert list(trait_slugs([], keys, prefix=prefix).values()) == expected


# -- NPS -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "score, group",
    [(0, "detractor"), (6, "detractor"), (7, "passive"), (8, "passive")]
    + [(9, "promoter"), (10, "promoter")],
)
def test_nps_group(score, group):
    assert nps_group(score) == group


@pytest.mark.parametrize("score", [-1, 11])
def test_nps_group_out_of_range(score):
    with pytest.raises(ValueError, match="0 to 10"):
        nps_group(score)


NPS = [{"key": "how_likely", "type": "nps"}]


@pytest.mark.parametrize(
    "answer, expected",
    [
        (0, (0, "detractor")),
        (6, (6, "detractor")),
        (7, (7, "passive")),
        (8, (8, "passive")),
        (9, (9, "promoter")),
        (10, (10, "promoter")),
        ("9", (9, "promoter")),
        (" 10 ", (10, "promoter")),
        (9.0, (9, "promoter")),
        (decimal.Decimal("7"), (7, "passive")),  # an int once normalized
        (11, None),
        (-1, None),
        (9.5, None),
        ("9.5", None),
        ("nine", None),
        ("010", None),
        (None, None),
        (True, None),
        ([9], None),
    ],
)
def test_nps_traits(answer, expected):
    completion = make(answers={"how_likely": answer}, questions=NPS)
    traits = build(completion)["identify"]["traits"]
    nps = {k: v for k, v in traits.items() if "nps" in k}
    if expected is None:
        assert nps == {}
    else:
        assert nps == {
            "refiner_nps_score": expected[0],
            "refiner_nps_group": expected[1],
        }
    # The answer itself stays a normal trait, as given.
    assert (
        traits["refiner_how_likely"] == completion["response"]["answers"]["how_likely"]
    )


def test_nps_needs_the_nps_type():
    traits = build(make(answers={"how_likely": 9}))["identify"]["traits"]
    assert "refiner_nps_score" not in traits


def test_nps_type_is_case_insensitive_and_first_valid_question_wins():
    questions = [
        {"key": "first", "type": "NPS"},
        {"key": "second", "type": "nps"},
        {"key": "third", "type": "nps"},
    ]
    completion = make(
        answers={"third": 10, "second": 3, "first": "n/a"}, questions=questions
    )
    traits = build(completion)["identify"]["traits"]
    assert (traits["refiner_nps_score"], traits["refiner_nps_group"]) == (
        3,
        "detractor",
    )


# -- build_messages: SPEC §2 -------------------------------------------------------


def test_spec_example_exactly():
    completion = normalize_completion(**kwargs())
    messages = build_messages(completion, OPTIONS)
    assert messages == [
        {
            "type": "identify",
            "messageId": ANY,
            "userId": "u-123",
            "traits": {
                "email": "ann@example.com",
                "name": "Ann",
                "refiner_how_likely": 9,
                "refiner_role": "Engineer",
                "refiner_tools": ["Segment", "Jira"],
                "refiner_last_survey_id": "nps-2026",
                "refiner_last_survey_name": "NPS Survey",
                "refiner_last_survey_completed_at": TS,
                "refiner_nps_score": 9,
                "refiner_nps_group": "promoter",
            },
            "timestamp": TS,
            "context": CONTEXT,
        },
        {
            "type": "group",
            "messageId": ANY,
            "userId": "u-123",
            "groupId": "acct-42",
            "traits": {"name": "Acme", "plan": "pro", "refiner_team_size": "11-50"},
            "timestamp": TS,
            "context": CONTEXT,
        },
        {
            "type": "track",
            "messageId": ANY,
            "userId": "u-123",
            "event": "Survey Completed",
            "properties": {
                "survey_id": "nps-2026",
                "survey_name": "NPS Survey",
                "response_id": "r-789",
                "completed_at": TS,
                "answers": {
                    "how_likely": 9,
                    "team_size": "11-50",
                    "role": "Engineer",
                    "tools": ["Segment", "Jira"],
                },
                "refiner_how_likely": 9,
                "refiner_team_size": "11-50",
                "refiner_role": "Engineer",
                "refiner_tools": ["Segment", "Jira"],
            },
            "timestamp": TS,
            "context": {**CONTEXT, "groupId": "acct-42"},
        },
    ]
    # Answers in question order, then the others in answer order.
    assert list(messages[2]["properties"]["answers"]) == [
        "how_likely",
        "team_size",
        "role",
        "tools",
    ]
    assert all("sentAt" not in m for m in messages)
    assert json.loads(dumps(messages)) == messages


def test_no_account_no_group_call():
    for account in (None, {"traits": {"name": "Acme"}}):
        completion = normalize_completion(**kwargs(account=account))
        messages = build_messages(completion, OPTIONS)
        assert [m["type"] for m in messages] == ["identify", "track"]
        assert messages[1]["context"] == CONTEXT


def test_account_scope_without_account_is_only_in_the_track():
    completion = normalize_completion(**kwargs(account=None))
    identify, track = build_messages(completion, OPTIONS)
    assert "refiner_team_size" not in identify["traits"]
    assert track["properties"]["answers"]["team_size"] == "11-50"
    assert track["properties"]["refiner_team_size"] == "11-50"


def test_answer_traits_win_over_given_traits_and_fixed_traits_over_all():
    completion = normalize_completion(
        **kwargs(
            user_traits={
                "refiner_role": "old role",
                "refiner_last_survey_id": "old survey",
                "email": "ann@example.com",
            },
            account={"id": "a", "traits": {"refiner_team_size": "1-10"}},
        )
    )
    messages = build(completion)
    assert messages["identify"]["traits"]["refiner_role"] == "Engineer"
    assert messages["identify"]["traits"]["refiner_last_survey_id"] == "nps-2026"
    assert messages["group"]["traits"] == {"refiner_team_size": "11-50"}


def test_answer_keyed_like_a_fixed_trait_gets_a_suffix():
    completion = make(answers={"last_survey_id": "mine", "nps_score": 3}, questions=NPS)
    messages = build(completion)
    traits = messages["identify"]["traits"]
    assert traits["refiner_last_survey_id"] == "s-1"
    assert traits["refiner_last_survey_id_2"] == "mine"
    assert traits["refiner_nps_score_2"] == 3
    assert messages["track"]["properties"]["answers"] == {
        "last_survey_id_2": "mine",
        "nps_score_2": 3,
    }


def test_collisions_and_custom_traits_in_messages():
    questions = [
        {"key": "Role", "trait": "Job Role"},
        {"key": "job role"},
        {"key": "size", "trait": "companySize", "scope": "account"},
    ]
    completion = make(
        answers={"job role": "b", "Role": "a", "size": 5},
        questions=questions,
        account={"id": "x"},
    )
    messages = build(completion)
    assert messages["track"]["properties"]["answers"] == {
        "job_role": "a",
        "job_role_2": "b",
        "companySize": 5,
    }
    assert messages["identify"]["traits"]["refiner_job_role"] == "a"
    assert messages["identify"]["traits"]["refiner_job_role_2"] == "b"
    assert messages["group"]["traits"] == {"refiner_companySize": 5}


def test_empty_prefix_and_options():
    options = BuildOptions(
        trait_prefix="",
        event_name="Survey Answered",
        library_name="my-lib",
        library_version="9.9",
    )
    completion = make(
        answers={"Role": "x", "survey_id": "mine", "email": "answer@x.io"},
        user_traits={"email": "ann@example.com"},
    )
    identify, track = build_messages(completion, options)
    assert identify["traits"] == {
        "email": "answer@x.io",  # the answer wins over the given trait
        "role": "x",
        "survey_id_2": "mine",
        "last_survey_id": "s-1",
        "last_survey_name": "Survey",
        "last_survey_completed_at": TS,
    }
    assert track["event"] == "Survey Answered"
    assert track["context"]["library"] == {"name": "my-lib", "version": "9.9"}


def test_empty_prefix_track_properties():
    options = BuildOptions(trait_prefix="")
    completion = make(answers={"Role": "x", "survey_id": "mine", "answers": 1})
    track = build(completion, options)["track"]
    assert track["properties"] == {
        "survey_id": "s-1",
        "survey_name": "Survey",
        "response_id": "r-1",
        "completed_at": TS,
        "answers": {"role": "x", "survey_id_2": "mine", "answers_2": 1},
        "role": "x",
        "survey_id_2": "mine",
        "answers_2": 1,
    }
    assert build(completion, options)["identify"]["traits"]["survey_id_2"] == "mine"


def test_custom_prefix_event_and_library():
    options = BuildOptions(
        trait_prefix="rf_",
        event_name="Survey Answered",
        library_name="lib",
        library_version="2",
    )
    messages = build(make(answers={"Role": "x"}), options)
    assert messages["identify"]["traits"]["rf_role"] == "x"
    assert messages["identify"]["traits"]["rf_last_survey_id"] == "s-1"
    assert messages["track"]["event"] == "Survey Answered"
    assert messages["track"]["properties"]["rf_role"] == "x"
    assert messages["track"]["context"] == {
        "library": {"name": "lib", "version": "2"},
        "integration": {"name": "refiner", "version": "2"},
    }


def test_nested_answer_values_pass_through():
    answers = {"tools": ["Segment", "Jira"], "address": {"city": "Oslo"}, "n": None}
    messages = build(make(answers=answers))
    assert messages["track"]["properties"]["answers"] == answers
    assert messages["track"]["properties"]["refiner_address"] == {"city": "Oslo"}
    assert messages["identify"]["traits"]["refiner_n"] is None


def test_messages_share_no_mutable_parts_and_input_is_untouched():
    completion = normalize_completion(**kwargs())
    before = copy.deepcopy(completion)
    identify, group, track = build_messages(completion, OPTIONS)
    identify["context"]["library"]["name"] = "changed"
    identify["traits"]["email"] = "changed"
    assert (
        group["context"] == CONTEXT and track["context"]["library"]["name"] != "changed"
    )
    assert completion == before


# -- messageIds --------------------------------------------------------------------


def ids(completion, options=OPTIONS, workspace_id="default"):
    return [
        m["messageId"]
        for m in build_messages(completion, options, workspace_id=workspace_id)
    ]


def test_message_ids_shape_and_distinct():
    message_ids = ids(normalize_completion(**kwargs()))
    assert [MESSAGE_ID.fullmatch(i).group(1) for i in message_ids] == [
        "identify",
        "group",
        "track",
    ]
    assert all(len(i) <= 100 for i in message_ids)
    assert len(set(message_ids)) == 3


def test_message_ids_deterministic():
    completion = normalize_completion(**kwargs())
    stored = json.loads(
        json.dumps(completion, sort_keys=True)
    )  # as the DB gives it back
    assert ids(completion) == ids(stored) == ids(normalize_completion(**kwargs()))
    assert build_messages(completion, OPTIONS) == build_messages(stored, OPTIONS)
    # Key order of the signal arguments does not matter.
    args = kwargs()
    args["response"]["answers"] = dict(reversed(args["response"]["answers"].items()))
    assert ids(normalize_completion(**args)) == ids(completion)


@pytest.mark.parametrize(
    "change",
    [
        {
            "response": {
                "id": "r-789",
                "completed_at": WHEN,
                "answers": {"how_likely": 8},
            }
        },
        {
            "response": {
                "id": "r-790",
                "completed_at": WHEN,
                "answers": {"how_likely": 9},
            }
        },
        {"account": {"id": "acct-42", "traits": {"name": "Acme", "plan": "free"}}},
        {"user_traits": {"email": "ann@example.org"}},
    ],
)
def test_any_edit_changes_all_message_ids(change):
    before = ids(normalize_completion(**kwargs()))
    after = ids(normalize_completion(**kwargs(**change)))
    assert not set(before) & set(after)


def test_message_ids_differ_per_workspace_and_options():
    completion = normalize_completion(**kwargs())
    base = set(ids(completion))
    assert not base & set(ids(completion, workspace_id="tenant-2"))
    assert not base & set(ids(completion, BuildOptions(trait_prefix="rf_")))
    assert not base & set(ids(completion, BuildOptions(library_version="1.2.4")))


# -- size: truncation and MessageTooLarge ----------------------------------------------


def sizes(messages):
    """Sizes as the limit is checked; the bytes sent are never more."""
    assert all(message_size(m) <= limit_size(m) for m in messages)
    return [limit_size(m) for m in messages]


def test_fitting_messages_are_not_marked():
    track = build(normalize_completion(**kwargs()))["track"]
    assert "truncated_answers" not in track["properties"]


def test_longest_answer_is_truncated_to_fit():
    original = "word " * 1000
    completion = make(answers={"why": original, "role": "Engineer"})
    options = BuildOptions(max_message_bytes=2000)
    messages = build_messages(completion, options)
    identify, track = messages
    assert max(sizes(messages)) <= 2000
    assert sizes(messages)[1] >= 2000 - 16  # cut no more than needed
    cut = track["properties"]["answers"]["why"]
    assert cut.endswith("…") and original.startswith(cut[:-1]) and len(cut) < 1000
    # The same cut everywhere the answer appears; the short answer is untouched.
    assert (
        track["properties"]["refiner_why"] == identify["traits"]["refiner_why"] == cut
    )
    assert track["properties"]["answers"]["role"] == "Engineer"
    assert track["properties"]["truncated_answers"] == ["why"]
    assert "refiner_truncated_answers" not in identify["traits"]


def test_truncation_cuts_the_longest_first_then_both_alike():
    completion = make(answers={"short": "s" * 300, "long": "l" * 3000})
    track = build(completion, BuildOptions(max_message_bytes=2500))["track"]
    assert track["properties"]["answers"]["short"] == "s" * 300
    assert track["properties"]["truncated_answers"] == ["long"]
    track = build(completion, BuildOptions(max_message_bytes=1500))["track"]
    answers = track["properties"]["answers"]
    assert answers["short"].endswith("…") and answers["long"].endswith("…")
    assert len(answers["short"]) == len(answers["long"])
    assert track["properties"]["truncated_answers"] == ["short", "long"]
    assert limit_size(track) <= 1500


def test_truncation_of_an_account_answer_reaches_the_group():
    questions = [{"key": "notes", "scope": "account"}]
    completion = make(
        answers={"notes": "n" * 5000}, questions=questions, account={"id": "a"}
    )
    messages = build(completion, BuildOptions(max_message_bytes=3000))
    cut = messages["track"]["properties"]["answers"]["notes"]
    assert cut.endswith("…")
    assert messages["group"]["traits"]["refiner_notes"] == cut
    assert max(sizes(messages.values())) <= 3000


@pytest.mark.parametrize("unit", ['é"\n', "😀\\\x01", "漢字 "])
def test_truncation_counts_json_escapes(unit):
    original = unit * 3000
    completion = make(answers={"why": original})
    messages = build_messages(completion, BuildOptions(max_message_bytes=4000))
    assert max(sizes(messages)) <= 4000
    assert max(sizes(messages)) >= 4000 - 2 * 12 - 4
    cut = messages[-1]["properties"]["answers"]["why"]
    assert original.startswith(cut[:-1]) and cut.endswith("…")


@pytest.mark.parametrize("unit", ["é", "漢", "😀", "\x01", "\n", '"'])
def test_answers_are_cut_to_a_common_byte_length(unit):
    completion = make(answers={"plain": "x" * 3000, "other": unit * 3000})
    track = build(completion, BuildOptions(max_message_bytes=2000))["track"]
    cut = track["properties"]["answers"]
    assert track["properties"]["truncated_answers"] == ["plain", "other"]
    plain, other = (len(json.dumps(cut[k][:-1])) for k in ("plain", "other"))
    assert plain - len(json.dumps(unit)) + 2 < other <= plain


def test_ten_megabyte_answer_is_cut_quickly():
    completion = make(answers={"essay": "x" * 10_000_000, "other": "é\n" * 50_000})
    started = time.perf_counter()
    messages = build_messages(completion, OPTIONS)
    assert time.perf_counter() - started < 3
    assert max(sizes(messages)) <= 32 * 1024
    assert messages[-1]["properties"]["truncated_answers"] == ["essay", "other"]


def test_truncation_is_deterministic():
    completion = make(answers={"why": "y" * 50_000})
    assert build_messages(completion, OPTIONS) == build_messages(completion, OPTIONS)


@pytest.mark.parametrize(
    "completion, options, reason",
    [
        (
            make(answers={"n": 1}, user_traits={"bio": "b" * 40_000}),
            OPTIONS,
            r"the identify message is (\d+) bytes, over the 32768-byte limit"
            r" \(no free-text answer to truncate\)",
        ),
        (
            make(answers={"why": "w" * 100}, user_traits={"bio": "b" * 40_000}),
            OPTIONS,
            r"the identify message is (\d+) bytes, over the 32768-byte limit"
            r" \(even with every free-text answer cut\)",
        ),
        (
            make(answers={"list": ["x" * 20_000]}),
            OPTIONS,
            r"the track message is (\d+) bytes, over the 32768-byte limit"
            r" \(no free-text answer to truncate\)",
        ),
        (
            make(
                answers={"why": "w"}, account={"id": "a", "traits": {"t": "t" * 1000}}
            ),
            BuildOptions(max_message_bytes=900),
            r"the group message is (\d+) bytes, over the 900-byte limit"
            r" \(even with every free-text answer cut\)",
        ),
    ],
)
def test_message_too_large(completion, options, reason):
    with pytest.raises(MessageTooLarge) as info:
        build_messages(completion, options)
    match = re.fullmatch(reason, str(info.value))
    assert match, str(info.value)
    assert int(match.group(1)) > options.max_message_bytes


# -- chunk_batches ---------------------------------------------------------------------


def msg(payload_bytes):
    """A message of exactly ``8 + payload_bytes`` bytes."""
    return {"p": "x" * payload_bytes}


def test_limits_are_segments():
    assert MAX_BATCH_BYTES == 500 * 1024
    assert MAX_BATCH_MESSAGES == 2500
    assert message_size(msg(92)) == 100


@pytest.mark.parametrize(
    "max_bytes, expected",
    [
        (200 + 3 * 102, [[0, 1, 2]]),
        (200 + 2 * 102, [[0, 1], [2]]),
        (200 + 2 * 102 - 1, [[0], [1], [2]]),
    ],
)
def test_chunk_batches_by_bytes(max_bytes, expected):
    groups = [[msg(92)], [msg(92)], [msg(92)]]
    assert chunk_batches(groups, max_bytes=max_bytes) == expected


@pytest.mark.parametrize(
    "max_messages, expected",
    [(9, [[0, 1, 2]]), (6, [[0, 1], [2]]), (5, [[0], [1], [2]])],
)
def test_chunk_batches_by_count_keeps_groups_whole(max_messages, expected):
    groups = [[msg(1)] * 3] * 3
    assert chunk_batches(groups, max_messages=max_messages) == expected


def test_chunk_batches_oversize_group_alone_and_order_kept():
    groups = [[msg(10)], [msg(1000)], [msg(10)], [], [msg(10)]]
    assert chunk_batches(groups, max_bytes=500) == [[0], [1], [2, 3, 4]]
    assert chunk_batches([]) == []


def test_chunk_batches_defaults():
    assert [len(c) for c in chunk_batches([[msg(1)]] * 2600)] == [2500, 100]
    groups = [[msg(10_000)] * 3 for _ in range(40)]  # 30 KB per delivery
    chunks = chunk_batches(groups)
    assert [i for c in chunks for i in c] == list(range(40))
    for chunk in chunks:
        total = 200 + sum(message_size(m) + 2 for i in chunk for m in groups[i])
        assert total <= 475_000
    assert len(chunks) == 3


def test_chunk_batches_real_messages_fit_a_request():
    groups = [
        build_messages(make(answers={"why": "w" * 30_000, "n": n}), OPTIONS)
        for n in range(40)
    ]
    for chunk in chunk_batches(groups):
        body = dumps(
            {
                "batch": [m for i in chunk for m in groups[i]],
                "sentAt": TS,
                "writeKey": "k" * 64,
            }
        )
        assert len(body.encode()) <= 475_000


# -- properties ------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)
# Free text, sometimes far over the limit, with multi-byte and escaped characters.
long_text = st.builds(
    str.__mul__,
    st.text(alphabet='ab "\\\n\x00é漢😀', min_size=1, max_size=4),
    st.integers(0, 4000),
)


@settings(max_examples=examples(150), deadline=None)
@given(
    answers=st.dictionaries(st.text(max_size=12), json_values | long_text, max_size=6),
    scopes=st.lists(st.sampled_from(["user", "account", None]), max_size=6),
    prefix=st.sampled_from(["refiner_", "", "x_"]),
    limit=st.integers(min_value=700, max_value=6000),
    with_account=st.booleans(),
)
def test_random_answers_always_fit_or_raise(
    answers, scopes, prefix, limit, with_account
):
    questions = [
        {"key": key, "scope": scope, "type": "nps" if n == 0 else None}
        for n, (key, scope) in enumerate(zip(answers, scopes, strict=False))
    ]
    completion = make(
        answers=answers,
        questions=questions,
        account={"id": "acct", "traits": {"name": "Acme"}} if with_account else None,
    )
    options = BuildOptions(trait_prefix=prefix, max_message_bytes=limit)
    try:
        messages = build_messages(completion, options)
    except MessageTooLarge as exc:
        event("too large")
        assert re.fullmatch(
            r"the (identify|group|track) message is \d+ bytes, .*", str(exc)
        )
        return
    assert [m["type"] for m in messages] == ["identify"] + ["group"] * with_account + [
        "track"
    ]
    original = completion["response"]["answers"]
    properties = messages[-1]["properties"]
    assert len(properties["answers"]) == len(original)  # nothing dropped
    slugs = trait_slugs(completion["survey"]["questions"], original, prefix=prefix)
    truncated = properties.get("truncated_answers", [])
    event("truncated" if truncated else "fits as is")
    for key, slug in slugs.items():
        value = properties["answers"][slug]
        assert properties[prefix + slug] == value
        if slug in truncated:
            assert value.endswith("…") and original[key].startswith(value[:-1])
        else:
            assert value == original[key]
    for m in messages:
        assert message_size(m) <= limit_size(m) <= limit
        assert len(dumps(m).encode()) == message_size(m)
        assert json.loads(dumps(m)) == m
        assert MESSAGE_ID.fullmatch(m["messageId"])


@settings(max_examples=examples(200), deadline=None)
@given(st.text())
def test_slugify_shape(text):
    slug = slugify(text)
    assert slug == slug.strip("_") and "__" not in slug
    assert all(c == "_" or c.isalnum() or not c.isascii() for c in slug)
    assert slug == slugify(slug)


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(st.text(max_size=6), unique=True, max_size=8),
    st.lists(st.text(max_size=6), max_size=8),
    st.sampled_from(["refiner_", ""]),
)
def test_trait_slugs_are_unique_and_never_fixed(question_keys, answer_keys, prefix):
    questions = [{"key": k, "trait": None} for k in question_keys]
    slugs = trait_slugs(questions, answer_keys + question_keys[:2], prefix=prefix)
    assert set(slugs) == set(answer_keys + question_keys[:2])
    folded = [s.lower() for s in slugs.values()]
    assert len(set(folded)) == len(folded)
    fixed = {"last_survey_id", "last_survey_name", "last_survey_completed_at"}
    fixed |= {"nps_score", "nps_group"}
    if prefix == "":
        fixed |= {"survey_id", "survey_name", "response_id", "completed_at"}
        fixed |= {"answers", "truncated_answers"}
    assert not fixed & set(folded)
