"""The payload, SPEC §2 messages: build_messages's identify, group and track
calls, and their messageIds.
"""

from __future__ import annotations

import copy
import json
from unittest.mock import ANY

import pytest
from flask_refiner_segment.core.completion import normalize_completion
from flask_refiner_segment.core.messages import BuildOptions
from flask_refiner_segment.core.messages import build_messages
from flask_refiner_segment.core.messages import dumps

from .test_completion import CONTEXT
from .test_completion import MESSAGE_ID
from .test_completion import NPS
from .test_completion import OPTIONS
from .test_completion import TS
from .test_completion import WHEN
from .test_completion import build
from .test_completion import kwargs
from .test_completion import make

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
