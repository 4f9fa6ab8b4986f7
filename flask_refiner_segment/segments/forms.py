"""The segment form: a name and the rules as JSON (the rule builder's rows are
read by :mod:`.builder`)."""

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

EXAMPLE = json.dumps(
    {
        "match": "all",
        "conditions": [{"kind": "trait", "key": "plan", "op": "eq", "value": "pro"}],
    },
    indent=2,
)


class SegmentForm(FlaskForm):  # type: ignore[misc]
    name = StringField("Name", validators=[DataRequired(), Length(max=255)])
    #: Checked by the view (as JSON, or built from the builder's rows).
    rules = TextAreaField(
        "Rules (JSON)",
        default=EXAMPLE,
        description='{"match": "all"|"any", "conditions": [...]}: see the README,'
        " “Rule format”.",
    )

    def validate_name(self, field: t.Any) -> None:
        try:
            check_name(field.data)
        except SegmentRuleError as exc:
            raise ValidationError("; ".join(m for _, m in exc.errors)) from None


class DeleteForm(FlaskForm):  # type: ignore[misc]
    """Only the CSRF token."""
