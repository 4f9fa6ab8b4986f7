"""The payload, SPEC §2 sizes: truncating answers to fit, MessageTooLarge, and
chunk_batches.
"""

from __future__ import annotations

import json
import re
import typing as t

import pytest
from flask_refiner_segment.core import messages as messages_module
from flask_refiner_segment.core.completion import normalize_completion
from flask_refiner_segment.core.messages import MAX_BATCH_BYTES
from flask_refiner_segment.core.messages import MAX_BATCH_MESSAGES
from flask_refiner_segment.core.messages import BuildOptions
from flask_refiner_segment.core.messages import MessageTooLarge
from flask_refiner_segment.core.messages import build_messages
from flask_refiner_segment.core.messages import chunk_batches
from flask_refiner_segment.core.messages import dumps
from flask_refiner_segment.core.messages import limit_size
from flask_refiner_segment.core.messages import message_size
from flask_refiner_segment.core.messages import trait_slugs
from hypothesis import event
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from .helpers import examples
from .test_completion import MESSAGE_ID
from .test_completion import OPTIONS
from .test_completion import TS
from .test_completion import build
from .test_completion import kwargs
from .test_completion import make

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


def test_ten_megabyte_answer_is_cut_quickly(monkeypatch):
    """Cutting measures the 10 MB message once, then only messages of about
    the limit (the binary search's builds), and the characters of each
    answer's first 32 KB: never 10 MB per build."""
    measured: list[int] = []

    def counted(message: t.Any) -> int:
        measured.append(limit_size(message))
        return measured[-1]

    widths = 0
    json_width = messages_module._json_width

    def width(ch: str) -> int:
        nonlocal widths
        widths += 1
        return json_width(ch)

    monkeypatch.setattr(messages_module, "limit_size", counted)
    monkeypatch.setattr(messages_module, "_json_width", width)
    completion = make(answers={"essay": "x" * 10_000_000, "other": "é\n" * 50_000})
    messages = build_messages(completion, OPTIONS)
    first, searched = measured[:3], measured[3:]  # a build is 3 messages
    assert max(first) > 10_000_000
    assert len(searched) >= 3 * 10  # the search built again and again,
    assert max(searched) < 100 * 1024  # and never with the whole answer
    assert widths <= 2 * (32 * 1024 + 1)  # characters measured: each answer's head
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
