"""The segment form: a name and the rules as JSON (validated by the rule checker)."""

from __future__ import annotations

import json
import typing as t

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms import TextAreaField
from wtforms import ValidationError
from wtforms.validators import DataRequired
from wtforms.validators import Length

from .rules import SegmentRuleError
from .rules import check_name
from .rules import parse_rules

EXAMPLE = json.dumps(
    {
        "match": "all",
        "conditions": [{"kind": "trait", "key": "plan", "op": "eq", "value": "pro"}],
    },
    indent=2,
)


class SegmentForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    rules = TextAreaField(
        "Rules (JSON)",
        default=EXAMPLE,
        description='{"match": "all"|"any", "conditions": [...]}',
    )
    parsed: t.Any = None

    def validate_name(self, field: t.Any) -> None:
        try:
            check_name(field.data)
        except SegmentRuleError as exc:
            raise ValidationError("; ".join(m for _, m in exc.errors)) from None

    def validate_rules(self, field: t.Any) -> None:
        try:
            self.parsed = parse_rules(field.data or "")
        except SegmentRuleError as exc:
            raise ValidationError(str(exc)) from None


class DeleteForm(FlaskForm):  # type: ignore[misc]
    """Only the CSRF token."""
