"""Behaviour that must not depend on the Python version (3.10 to 3.13).

``datetime.fromisoformat`` takes more on 3.11+ than on 3.10: any number of
fraction digits, a comma before them, and ``+HH`` / ``+HHMM`` offsets. A host's
``completed_at``, a timestamp Segment posts and a date in a segment rule are
accepted alike on every supported Python.
"""

from __future__ import annotations

import datetime as dt

import pytest
from flask_refiner_segment.core.completion import InvalidCompletion
from flask_refiner_segment.core.completion import normalize_completion
from flask_refiner_segment.inbound.parse import parse_timestamp
from flask_refiner_segment.segments.rules import SegmentRuleError
from flask_refiner_segment.segments.rules import validate_rules

#: (ISO-8601 text, the same instant as naive UTC)
ACCEPTED = [
    ("2026-11-28T10:30:00.5Z", dt.datetime(2026, 11, 28, 10, 30, 0, 500000)),
    ("2026-11-28T10:30:00.12Z", dt.datetime(2026, 11, 28, 10, 30, 0, 120000)),
    ("2026-11-28T10:30:00.1234Z", dt.datetime(2026, 11, 28, 10, 30, 0, 123400)),
    # Beyond microseconds the digits are cut, not rounded (as 3.11+ does).
    ("2026-11-28T10:30:00.1234567Z", dt.datetime(2026, 11, 28, 10, 30, 0, 123456)),
    ("2026-11-28T10:30:00,25Z", dt.datetime(2026, 11, 28, 10, 30, 0, 250000)),
    ("2026-11-28T12:30:00+0200", dt.datetime(2026, 11, 28, 10, 30)),
    ("2026-11-28T12:30:00+02", dt.datetime(2026, 11, 28, 10, 30)),
    ("2026-11-28T08:00:00.5-0230", dt.datetime(2026, 11, 28, 10, 30, 0, 500000)),
    ("2026-11-28T12:30+0200", dt.datetime(2026, 11, 28, 10, 30)),
    ("2026-11-28 10:30:00.123", dt.datetime(2026, 11, 28, 10, 30, 0, 123000)),
    ("2026-11-28T12:30:00.000+02:00", dt.datetime(2026, 11, 28, 10, 30)),
    ("2026-11-28", dt.datetime(2026, 11, 28)),
]

REFUSED = [
    "yesterday",
    "2026-11-28T25:00:00Z",
    "2026-11-28T10:30:00.5 +00:00",
    "2026-11-28T10:30:00+2400",
    "2026-13-01T00:00:00Z",
]


@pytest.mark.parametrize("text, expected", ACCEPTED)
def test_inbound_timestamp(text: str, expected: dt.datetime) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize("text", REFUSED)
def test_inbound_timestamp_refused(text: str) -> None:
    assert parse_timestamp(text) is None


def _completed_at(value: str) -> str:
    completion = normalize_completion(
        user_id="u-1",
        survey={"id": "s", "name": "S", "questions": []},
        response={"id": "r", "completed_at": value, "answers": {}},
    )
    return str(completion["response"]["completed_at"])


@pytest.mark.parametrize("text, expected", ACCEPTED)
def test_completed_at(text: str, expected: dt.datetime) -> None:
    assert _completed_at(text) == expected.isoformat(timespec="milliseconds") + "Z"


@pytest.mark.parametrize("text", REFUSED)
def test_completed_at_refused(text: str) -> None:
    with pytest.raises(InvalidCompletion, match="completed_at"):
        _completed_at(text)


def _rules(value: str) -> dict:
    return {
        "match": "all",
        "conditions": [
            {"kind": "trait", "key": "signed_up", "op": "gt", "value": value}
        ],
    }


@pytest.mark.parametrize("text", [text for text, _ in ACCEPTED])
def test_rule_date(text: str) -> None:
    rules = _rules(text)
    assert validate_rules(rules) is rules


@pytest.mark.parametrize("text", REFUSED)
def test_rule_date_refused(text: str) -> None:
    with pytest.raises(SegmentRuleError, match="ISO date"):
        validate_rules(_rules(text))
