"""Flask-WTF forms of the settings page, and the checks behind them."""

from __future__ import annotations

import re
import typing as t

from flask_wtf import FlaskForm
from wtforms import BooleanField
from wtforms import Field
from wtforms import IntegerField
from wtforms import PasswordField
from wtforms import RadioField
from wtforms import SelectMultipleField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.validators import DataRequired
from wtforms.validators import InputRequired
from wtforms.validators import Length
from wtforms.validators import NumberRange
from wtforms.validators import Optional
from wtforms.validators import Regexp
from wtforms.validators import ValidationError
from wtforms.widgets import CheckboxInput
from wtforms.widgets import ListWidget

from ..core.urls import check_data_plane_url

try:  # WTForms >= 3.3 deprecates (value, label) tuples
    from wtforms.fields.choices import SelectChoice as _Choice
except ImportError:  # pragma: no cover - older WTForms

    def _Choice(value: str, label: str) -> tuple[str, str]:  # noqa: N802
        return (value, label)


#: Trait prefix: lowercase letters, digits and ``_``, not starting with a digit,
#: at most 40 characters; empty is allowed (traits are then named by slug only).
PREFIX_PATTERN = r"^([a-z_][a-z0-9_]{0,39})?$"
MAX_SURVEY_ID = 255
MAX_SURVEYS = 1000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _strip(value: t.Any) -> t.Any:
    return value.strip() if isinstance(value, str) else value


def no_control_characters(form: FlaskForm, field: Field) -> None:
    """Refuse control characters (NUL breaks PostgreSQL, newlines break logs)."""
    if isinstance(field.data, str) and _CONTROL.search(field.data):
        raise ValidationError("Control characters are not allowed.")


def parse_survey_ids(text: str | None) -> list[str]:
    """Survey ids typed one per line or separated by commas."""
    ids = (part.strip() for part in re.split(r"[,\n]", text or ""))
    return [i for i in ids if i]


def _secret_field(label: str, noun: str, rule: t.Callable[..., None]) -> t.Any:
    """A secret typed into a password field: blank is allowed (the form's view
    says what blank means), at most 200 characters, no control characters, and
    ``rule`` on the rest."""
    return PasswordField(
        label,
        filters=[_strip],
        validators=[
            Optional(),
            Length(max=200, message=f"The {noun} is at most 200 characters."),
            no_control_characters,
            rule,
        ],
    )


def _data_plane(form: SettingsForm, field: Field) -> None:
    if form.region.data != "custom":
        return
    reason = check_data_plane_url(
        field.data or "", allow_private=form.allow_private_hosts
    )
    if reason:
        raise ValidationError(reason)


class SettingsForm(FlaskForm):  # type: ignore[misc]
    """The Segment source of a workspace.

    Set :attr:`allow_private_hosts` from the config and ``surveys.choices``
    (survey ids to offer as checkboxes) before validating or rendering.
    """

    #: Accept data planes on private addresses and plain http (config).
    allow_private_hosts = False

    write_key = _secret_field(
        "Write key",
        "write key",
        Regexp(r"^\S+$", message="The write key cannot contain spaces."),
    )
    enabled = BooleanField("Send completed surveys to Segment")
    region = RadioField(
        "Region",
        choices=[
            _Choice("us", "US (api.segment.io)"),
            _Choice("eu", "EU (events.eu1.segmentapis.com)"),
            _Choice("custom", "Custom data plane"),
        ],
        default="us",
    )
    custom_api_host = StringField(
        "Data-plane URL", filters=[_strip], validators=[_data_plane]
    )
    track_event = StringField(
        "Track event name",
        filters=[_strip],
        validators=[
            DataRequired(message="Enter the event name."),
            Length(max=200, message="The event name is at most 200 characters."),
            no_control_characters,
        ],
    )
    lifecycle_events = BooleanField("Also send survey shown and dismissed events")
    trait_prefix = StringField(
        "Trait prefix",
        filters=[_strip],
        validators=[
            Regexp(
                PREFIX_PATTERN,
                message="Use lowercase letters, digits and _ (not starting with"
                " a digit), at most 40 characters; or leave it empty.",
            )
        ],
    )
    send_all = RadioField(
        "Surveys to send",
        choices=[
            _Choice("all", "All surveys"),
            _Choice("selected", "Only the surveys selected below"),
        ],
        default="all",
    )
    surveys = SelectMultipleField(
        "Surveys seen so far",
        choices=[],
        validate_choice=False,
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
    other_surveys = TextAreaField(
        "Other survey ids (one per line)",
        validators=[Length(max=20_000, message="At most 20,000 characters.")],
    )

    def offer_surveys(self, ids: t.Iterable[str]) -> None:
        """The survey ids shown as checkboxes."""
        self.surveys.choices = [_Choice(i, i) for i in sorted(set(ids))]

    def survey_ids(self) -> list[str] | None:
        """The selected survey ids, sorted, or ``None`` for all surveys."""
        if self.send_all.data != "selected":
            return None
        ticked = [str(i).strip() for i in self.surveys.data or ()]
        return sorted(
            {*filter(None, ticked), *parse_survey_ids(self.other_surveys.data)}
        )

    def validate_other_surveys(self, field: Field) -> None:
        ids = self.survey_ids()
        if ids is None:
            return
        if not ids:
            raise ValidationError("Select at least one survey, or send all surveys.")
        if len(ids) > MAX_SURVEYS:
            raise ValidationError(f"At most {MAX_SURVEYS} surveys.")
        if any(len(i) > MAX_SURVEY_ID for i in ids):
            raise ValidationError(f"Survey ids are at most {MAX_SURVEY_ID} characters.")
        if any(_CONTROL.search(i) for i in ids):
            raise ValidationError("Survey ids cannot contain control characters.")


class WebhookSecretForm(FlaskForm):  # type: ignore[misc]
    """The shared secret of Segment's Webhooks destination (``X-Signature``)."""

    secret = _secret_field("Shared secret", "secret", Optional())
    clear = BooleanField("Remove the shared secret")


class ActionForm(FlaskForm):  # type: ignore[misc]
    """A button: only the CSRF token."""


class BackfillForm(FlaskForm):  # type: ignore[misc]
    """Start a backfill of the last N days."""

    days = IntegerField(
        "Days",
        default=30,
        validators=[
            InputRequired(message="Enter a number of days."),
            NumberRange(min=1, max=3650, message="Enter 1 to 3650 days."),
        ],
    )
