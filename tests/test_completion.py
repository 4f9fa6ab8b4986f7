"""The payload, SPEC §1: normalize_completion's output, every reason it refuses,
completed_at.

The SPEC §1 example signal and the payload helpers (``kwargs``, ``make``,
``build``) live here; the other payload tests import them: test_values.py
(value conversion, dumps, content_hash), test_messages.py (SPEC §2 messages,
messageIds), test_messages_slugs.py (trait slugs, NPS) and
test_messages_size.py (truncation, MessageTooLarge, chunk_batches).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid

import pytest
from flask_refiner_segment.core.completion import InvalidCompletion
from flask_refiner_segment.core.completion import normalize_completion
from flask_refiner_segment.core.messages import BuildOptions
from flask_refiner_segment.core.messages import build_messages

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


NPS = [{"key": "how_likely", "type": "nps"}]


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
