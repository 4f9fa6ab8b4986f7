"""Flask-WTF forms of the settings page."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from flask import current_app
from flask_wtf import FlaskForm
from wtforms import BooleanField
from wtforms import Field
from wtforms import PasswordField
from wtforms import RadioField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import Optional
from wtforms.validators import Regexp
from wtforms.validators import ValidationError

try:  # WTForms >= 3.3 deprecates (value, label) tuples
    from wtforms.fields.choices import SelectChoice as _Choice
except ImportError:  # pragma: no cover - older WTForms

    def _Choice(value: str, label: str) -> tuple[str, str]:  # noqa: N802
        return (value, label)


#: Segment-friendly trait names: snake_case, not starting with a digit.
PREFIX_PATTERN = r"^([a-z][a-z0-9_]{0,39})?$"
LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}


def _private_hosts_allowed() -> bool:
    from .extension import _get_state

    return bool(_get_state().config.allow_private_hosts)


def check_data_plane_url(url: str) -> str | None:
    """Why ``url`` may not be a custom data plane, or ``None`` when it may.

    https is required, http only for localhost. Addresses inside private,
    link-local or reserved ranges are refused unless
    ``REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS`` is set (a guard against SSRF);
    loopback is allowed for local development and tests.
    """
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return "Enter a valid URL."
    if parts.scheme not in ("http", "https") or not host:
        return "Enter a URL starting with https://."
    if parts.username or parts.password:
        return "The URL must not contain credentials."
    local = host in LOCAL_NAMES
    if parts.scheme == "http" and not local:
        return "Use https:// (http:// is only allowed for localhost)."
    if _private_hosts_allowed():
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_loopback:
        allowed = current_app.testing or current_app.debug
        return None if allowed else "Internal addresses are not allowed."
    if address.is_private or address.is_link_local or address.is_reserved:
        return "Internal addresses are not allowed."
    if address.is_multicast or address.is_unspecified:
        return "Internal addresses are not allowed."
    return None


def _data_plane(form: FlaskForm, field: Field) -> None:
    if form.region.data != "custom":
        return
    if not field.data:
        raise ValidationError("Enter the data-plane URL for a custom region.")
    reason = check_data_plane_url(field.data.strip())
    if reason:
        raise ValidationError(reason)


class SettingsForm(FlaskForm):  # type: ignore[misc]
    """The Segment source of a workspace."""

    write_key = PasswordField(
        "Write key",
        validators=[Optional(), Length(max=200)],
        description="Leave blank to keep the stored key.",
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
        "Data-plane URL", validators=[Length(max=2048), _data_plane]
    )
    track_event = StringField(
        "Track event name", validators=[DataRequired(), Length(max=200)]
    )
    trait_prefix = StringField(
        "Trait prefix",
        validators=[
            Regexp(
                PREFIX_PATTERN,
                message="Use lowercase letters, digits and _ (not first),"
                " at most 40 characters; or leave it empty.",
            )
        ],
    )
    send_all = RadioField(
        "Surveys to send",
        choices=[
            _Choice("all", "All surveys"),
            _Choice("selected", "Only these survey ids"),
        ],
        default="all",
    )
    surveys = TextAreaField(
        "Survey ids (one per line)", validators=[Length(max=20_000)]
    )
    webhook_secret = PasswordField(
        "Webhooks shared secret",
        validators=[Optional(), Length(max=200)],
        description="Optional. Leave blank to keep it.",
    )
    clear_webhook_secret = BooleanField("Remove the shared secret")

    def survey_ids(self) -> list[str] | None:
        """The selected survey ids, or ``None`` for all."""
        if self.send_all.data != "selected":
            return None
        ids = [line.strip() for line in (self.surveys.data or "").splitlines()]
        return sorted({i for i in ids if i})

    def validate_surveys(self, field: Field) -> None:
        if self.send_all.data == "selected" and not self.survey_ids():
            raise ValidationError("List at least one survey id, or send all surveys.")
        if any(len(i) > 255 for i in self.survey_ids() or []):
            raise ValidationError("Survey ids are at most 255 characters.")

    def validate_track_event(self, field: Field) -> None:
        if field.data and re.search(r"[\x00-\x1f]", field.data):
            raise ValidationError("The event name cannot contain control characters.")


class ActionForm(FlaskForm):  # type: ignore[misc]
    """A button: only the CSRF token."""
