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
from .rules import validate_rules

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

    def validate_rules(self, field: t.Any) -> None:
        try:
            data = json.loads(field.data or "")
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON: {exc}") from None
        try:
            self.parsed = validate_rules(data)
        except SegmentRuleError as exc:
            raise ValidationError(str(exc)) from None


class DeleteForm(FlaskForm):  # type: ignore[misc]
    """Only the CSRF token."""
