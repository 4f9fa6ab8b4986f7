"""The payload builder: every rule of SPEC §2, as pure functions."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import uuid

import pytest
from flask_refiner_segment.payload import BuildOptions
from flask_refiner_segment.payload import InvalidCompletion
from flask_refiner_segment.payload import MessageTooLarge
from flask_refiner_segment.payload import build_messages
from flask_refiner_segment.payload import chunk_batches
from flask_refiner_segment.payload import content_hash
from flask_refiner_segment.payload import message_size
from flask_refiner_segment.payload import normalize_completion
from flask_refiner_segment.payload import nps_group
from flask_refiner_segment.payload import slugify
from flask_refiner_segment.payload import trait_slugs
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

OPTIONS = BuildOptions(library_version="1.2.3")
WHEN = dt.datetime(2026, 11, 28, 10, 30, 0, 123456, tzinfo=dt.timezone.utc)


def make(answers=None, questions=None, account=..., user_traits=None, **response):
    return normalize_completion(
        user_id="u-1",
        survey={"id": "s-1", "name": "NPS", "questions": questions or []},
        response={
            "id": "r-1",
            "completed_at": WHEN,
            "answers": {"how_likely": 9} if answers is None else answers,
            **response,
        },
        account={"id": "acct-1", "traits": {"name": "Acme"}}
        if account is ...
        else account,
        user_traits=user_traits if user_traits is not None else {"email": "a@x.io"},
    )


def by_type(messages):
    return {m["type"]: m for m in messages}


@pytest.mark.parametrize(
    "text, slug",
    [
        ("How likely?", "how_likely"),
        ("What is your job role?", "what_is_your_job_role"),
        ("  --Team   Size--  ", "team_size"),
        ("NPS_Score", "nps_score"),
        ("Größe", "gr_e"),
        ("a.b/c", "a_b_c"),
        ("___", ""),
    ],
)
def test_slugify(text, slug):
    assert slugify(text) == slug


def test_collisions_get_suffixes_in_question_order():
    questions = [{"key": "Role"}, {"key": "role"}, {"key": "ROLE!"}]
    slugs = trait_slugs(questions, ["ROLE!", "role", "Role", "extra"])
    assert slugs == {
        "Role": "role",
        "role": "role_2",
        "ROLE!": "role_3",
        "extra": "extra",
    }


def test_reserved_names_and_empty_slug():
    slugs = trait_slugs([], ["last_survey_id", "!!!", "???"])
    assert slugs == {
        "last_survey_id": "last_survey_id_2",
        "!!!": "answer",
        "???": "answer_2",
    }


def test_custom_trait_name():
    completion = make(
        answers={"q1": "Engineer"}, questions=[{"key": "q1", "trait": "Job Role"}]
    )
    identify = by_type(build_messages(completion, OPTIONS))["identify"]
    assert identify["traits"]["refiner_job_role"] == "Engineer"


@pytest.mark.parametrize(
    "score, group",
    [
        (0, "detractor"),
        (6, "detractor"),
        (7, "passive"),
        (8, "passive"),
        (9, "promoter"),
        (10, "promoter"),
    ],
)
def test_nps_groups(score, group):
    assert nps_group(score) == group
    completion = make(
        answers={"how_likely": score}, questions=[{"key": "how_likely", "type": "nps"}]
    )
    traits = by_type(build_messages(completion, OPTIONS))["identify"]["traits"]
    assert (traits["refiner_nps_score"], traits["refiner_nps_group"]) == (score, group)


@pytest.mark.parametrize("value", [11, -1, None, "nine", True, 7.5])
def test_nps_out_of_range_is_a_plain_trait(value):
    completion = make(
        answers={"how_likely": value}, questions=[{"key": "how_likely", "type": "nps"}]
    )
    traits = by_type(build_messages(completion, OPTIONS))["identify"]["traits"]
    assert "refiner_nps_score" not in traits and "refiner_nps_group" not in traits
    assert traits["refiner_how_likely"] == value


def test_nps_string_digit_counts():
    completion = make(
        answers={"how_likely": "9"}, questions=[{"key": "how_likely", "type": "nps"}]
    )
    traits = by_type(build_messages(completion, OPTIONS))["identify"]["traits"]
    assert traits["refiner_nps_score"] == 9


def test_identify_group_track_exactly():
    completion = make(
        answers={
            "how_likely": 9,
            "Role": "Engineer",
            "Team Size": "11-50",
            "tools": ["A", "B"],
        },
        questions=[
            {"key": "how_likely", "type": "nps"},
            {"key": "Team Size", "scope": "account"},
        ],
    )
    messages = build_messages(completion, OPTIONS)
    assert [m["type"] for m in messages] == ["identify", "group", "track"]
    identify, group, track = messages
    assert identify["userId"] == "u-1"
    assert identify["traits"] == {
        "email": "a@x.io",
        "refiner_how_likely": 9,
        "refiner_role": "Engineer",
        "refiner_tools": ["A", "B"],
        "refiner_last_survey_id": "s-1",
        "refiner_last_survey_name": "NPS",
        "refiner_last_survey_completed_at": "2026-11-28T10:30:00.123Z",
        "refiner_nps_score": 9,
        "refiner_nps_group": "promoter",
    }
    assert group["groupId"] == "acct-1"
    assert group["traits"] == {"name": "Acme", "refiner_team_size": "11-50"}
    assert track["event"] == "Survey Completed"
    assert track["context"]["groupId"] == "acct-1"
    props = track["properties"]
    assert props["answers"] == {
        "how_likely": 9,
        "role": "Engineer",
        "team_size": "11-50",
        "tools": ["A", "B"],
    }
    assert props["refiner_team_size"] == "11-50" and props["refiner_role"] == "Engineer"
    assert (props["survey_id"], props["survey_name"], props["response_id"]) == (
        "s-1",
        "NPS",
        "r-1",
    )
    for m in messages:
        assert m["timestamp"] == "2026-11-28T10:30:00.123Z"
        assert m["context"]["library"] == {
            "name": "flask-refiner-segment",
            "version": "1.2.3",
        }
        assert m["context"]["integration"] == {"name": "refiner", "version": "1.2.3"}
        assert "sentAt" not in m


def test_no_account_no_group():
    messages = build_messages(make(account=None), OPTIONS)
    assert [m["type"] for m in messages] == ["identify", "track"]
    assert "groupId" not in messages[1]["context"]
    messages = build_messages(make(account={"traits": {"name": "x"}}), OPTIONS)
    assert [m["type"] for m in messages] == ["identify", "track"]


def test_empty_prefix_and_event_name():
    options = BuildOptions(trait_prefix="", event_name="Survey Answered")
    identify, _, track = build_messages(make(), options)
    assert (
        identify["traits"]["how_likely"] == 9 and "last_survey_id" in identify["traits"]
    )
    assert track["event"] == "Survey Answered"


def test_message_ids_deterministic_distinct_and_change_on_edit():
    first = build_messages(make(), OPTIONS)
    again = build_messages(make(), OPTIONS)
    edited = build_messages(make(answers={"how_likely": 3}), OPTIONS)
    ids = [m["messageId"] for m in first]
    assert ids == [m["messageId"] for m in again]
    assert len(set(ids)) == 3 and all(len(i) <= 100 for i in ids)
    assert not set(ids) & {m["messageId"] for m in edited}
    other_ws = build_messages(make(), OPTIONS, workspace_id="tenant-b")
    assert not set(ids) & {m["messageId"] for m in other_ws}


class Color(enum.Enum):
    RED = "red"


def test_values_converted_nothing_dropped():
    seen: list[str] = []

    class Odd:
        def __str__(self) -> str:
            return "odd"

    completion = normalize_completion(
        user_id=42,
        survey={"id": 7},
        response={
            "id": 9,
            "completed_at": dt.datetime(2026, 1, 2, 3, 4, 5),  # naive: UTC
            "answers": {
                "d": decimal.Decimal("2.50"),
                "i": decimal.Decimal("3"),
                "day": dt.date(2026, 1, 2),
                "at": dt.datetime(
                    2026, 1, 2, 4, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))
                ),
                "u": uuid.UUID(int=1),
                "e": Color.RED,
                "s": {"b", "a"},
                "t": (1, 2),
                "nan": float("nan"),
                "o": Odd(),
            },
        },
        on_convert=seen.append,
    )
    answers = completion["response"]["answers"]
    assert completion["user_id"] == "42"
    assert completion["response"]["completed_at"] == "2026-01-02T03:04:05.000Z"
    assert answers == {
        "d": 2.5,
        "i": 3,
        "day": "2026-01-02",
        "at": "2026-01-02T03:00:00.000Z",
        "u": "00000000-0000-0000-0000-000000000001",
        "e": "red",
        "s": ["a", "b"],
        "t": [1, 2],
        "nan": "nan",
        "o": "odd",
    }
    assert seen == ["Odd"]
    json.dumps(completion)


@pytest.mark.parametrize(
    "kwargs, reason",
    [
        ({"user_id": None}, "user_id"),
        ({"user_id": True}, "user_id"),
        ({"user_id": 1.5}, "user_id"),
        ({"survey": "nps"}, "survey must be a mapping"),
        ({"survey": {"name": "x"}}, "survey id"),
        ({"response": None}, "response must be a mapping"),
        ({"response": {"answers": {}}}, "response id"),
        ({"response": {"id": "r", "answers": None}}, "answers must be a mapping"),
        (
            {"response": {"id": "r", "answers": {}, "completed_at": "yesterday"}},
            "completed_at",
        ),
        ({"survey": {"id": "s", "questions": "q"}}, "questions must be a list"),
        (
            {"survey": {"id": "s", "questions": [{"text": "no key"}]}},
            "needs a str 'key'",
        ),
        (
            {"survey": {"id": "s", "questions": [{"key": "k", "scope": "team"}]}},
            "scope",
        ),
        ({"account": "acme"}, "account must be a mapping"),
        ({"account": {"id": "a", "traits": []}}, "account traits"),
        ({"user_traits": ["x"]}, "user_traits"),
    ],
)
def test_invalid_completions(kwargs, reason):
    base = {
        "user_id": "u",
        "survey": {"id": "s"},
        "response": {"id": "r", "answers": {}},
    }
    with pytest.raises(InvalidCompletion, match=reason):
        normalize_completion(**{**base, **kwargs})


def test_content_hash_tracks_content():
    assert content_hash(make()) == content_hash(make())
    assert content_hash(make()) != content_hash(make(answers={"how_likely": 8}))


def test_long_free_text_is_truncated_and_marked():
    essay = "é" * 40_000
    completion = make(answers={"essay": essay, "short": "ok"})
    messages = build_messages(completion, OPTIONS)
    assert all(message_size(m) <= 32 * 1024 for m in messages)
    identify, _, track = messages
    cut = identify["traits"]["refiner_essay"]
    assert cut.endswith("…") and len(cut) < len(essay)
    assert track["properties"]["truncated_answers"] == ["essay"]
    assert track["properties"]["answers"]["essay"] == cut
    assert track["properties"]["refiner_short"] == "ok"


def test_too_large_without_free_text_fails_clearly():
    completion = make(user_traits={"blob": "x" * 40_000})
    with pytest.raises(MessageTooLarge, match="identify message is .* bytes"):
        build_messages(completion, OPTIONS)


def test_chunk_batches_limits():
    group = [{"type": "track", "x": "y" * 1000}] * 3
    chunks = chunk_batches([group] * 400, max_bytes=475_000)
    assert sum(len(c) for c in chunks) == 400
    for chunk in chunks:
        size = 200 + sum(message_size(m) + 2 for i in chunk for m in [group[0]] * 3)
        assert size <= 475_000
    assert [i for c in chunks for i in c] == list(range(400))
    small = chunk_batches([[{"a": 1}]] * 3000)
    assert [len(c) for c in small] == [2500, 500]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=2000),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=30), json_values, max_size=12))
def test_random_answers_always_fit_or_fail_clearly(answers):
    completion = make(answers=answers)
    try:
        messages = build_messages(completion, OPTIONS)
    except MessageTooLarge:
        return
    assert all(message_size(m) <= 32 * 1024 for m in messages)
    assert len({m["messageId"] for m in messages}) == len(messages)
    json.loads(json.dumps(messages))
