"""The example's users and surveys (static data, as a real app would load them)."""

from __future__ import annotations

import typing as t

USERS: dict[str, dict[str, t.Any]] = {
    "ann": {
        "name": "Ann Example",
        "email": "ann@example.com",
        "account": {"id": "acct-acme", "traits": {"name": "Acme Inc.", "plan": "pro"}},
        "admin": True,
    },
    "bob": {
        "name": "Bob Example",
        "email": "bob@example.com",
        "account": None,
        "admin": False,
    },
    "cleo": {
        "name": "Cleo Example",
        "email": "cleo@globex.example",
        "account": {
            "id": "acct-globex",
            "traits": {"name": "Globex", "plan": "starter"},
        },
        "admin": False,
    },
}

SURVEYS: dict[str, dict[str, t.Any]] = {
    "nps-2026": {
        "id": "nps-2026",
        "name": "NPS Survey",
        "questions": [
            {
                "key": "how_likely",
                "text": "How likely are you to recommend us to a friend?",
                "type": "nps",
                "input": "scale",
                "choices": list(range(11)),
            },
            {
                "key": "why",
                "text": "What is the main reason for your score?",
                "input": "text",
            },
        ],
    },
    "product-feedback": {
        "id": "product-feedback",
        "name": "Product Feedback",
        "questions": [
            {
                "key": "role",
                "text": "What is your job role?",
                "input": "choice",
                "choices": ["Engineer", "Product Manager", "Designer", "Other"],
            },
            {
                "key": "tools",
                "text": "Which tools do you use with us?",
                "input": "multi",
                "choices": ["Segment", "Jira", "Slack", "HubSpot"],
            },
            {
                "key": "rating",
                "text": "How would you rate the product (1-5)?",
                "input": "scale",
                "choices": [1, 2, 3, 4, 5],
            },
            {
                "key": "Team Size",
                "text": "How large is your team?",
                "input": "choice",
                "choices": ["1-10", "11-50", "51-200", "200+"],
                "scope": "account",
            },
            {
                "key": "feedback",
                "text": "Anything else you would like to tell us?",
                "input": "text",
            },
        ],
    },
}


#: A user segment built from what Segment sends in (see the inbound demo).
POWER_EXPORTERS = {
    "name": "Power exporters",
    "rules": {
        "match": "all",
        "conditions": [
            {"kind": "event", "name": "Report Exported", "op": "at_least", "count": 3}
        ],
    },
}

#: Shown only to members of the segment.
SURVEYS["export-feedback"] = {
    "id": "export-feedback",
    "name": "Export Feedback (power exporters only)",
    "segment": POWER_EXPORTERS["name"],
    "questions": [
        {
            "key": "export_format",
            "text": "Which export format should we add next?",
            "input": "choice",
            "choices": ["xlsx", "parquet", "pdf"],
        },
        {
            "key": "export_pain",
            "text": "What slows your exports down?",
            "input": "text",
        },
    ],
}


def signal_questions(survey: dict[str, t.Any]) -> list[dict[str, t.Any]]:
    """The question metadata of the survey_completed contract."""
    return [
        {
            "key": q["key"],
            "text": q["text"],
            "type": q.get("type"),
            "scope": q.get("scope", "user"),
        }
        for q in survey["questions"]
    ]
