"""The payload, SPEC §2: answer keys as trait names (slugify, trait_slugs) and
the NPS traits.
"""

from __future__ import annotations

import decimal

import pytest
from flask_refiner_segment.core.completion import nps_group
from flask_refiner_segment.core.messages import slugify
from flask_refiner_segment.core.messages import trait_slugs
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from .helpers import examples
from .test_completion import NPS
from .test_completion import build
from .test_completion import make

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


# -- properties ------------------------------------------------------------------------


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
