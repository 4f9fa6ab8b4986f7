"""The settings forms and their checks, without a database."""

from __future__ import annotations

import ipaddress
import typing as t

import pytest
from flask import Flask
from flask_refiner_segment.core.urls import check_data_plane_url
from flask_refiner_segment.core.urls import ip_literal
from flask_refiner_segment.web.forms import SettingsForm
from flask_refiner_segment.web.forms import WebhookSecretForm
from flask_refiner_segment.web.forms import parse_survey_ids
from werkzeug.datastructures import MultiDict


@pytest.fixture
def form_app() -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="forms", WTF_CSRF_ENABLED=False, TESTING=True)
    return app


VALID = {
    "enabled": "y",
    "region": "us",
    "custom_api_host": "",
    "track_event": "Survey Completed",
    "trait_prefix": "refiner_",
    "send_all": "all",
}


def settings_form(
    app: Flask,
    *,
    allow_private: bool = False,
    offer: t.Iterable[str] = (),
    **fields: t.Any,
) -> SettingsForm:
    data = MultiDict({**VALID, **{k: v for k, v in fields.items() if k != "surveys"}})
    for survey in fields.get("surveys", ()):
        data.add("surveys", survey)
    with app.test_request_context(method="POST", data=data):
        form = SettingsForm()
        form.allow_private_hosts = allow_private
        form.offer_surveys(offer)
        form.validate()
        return form


# -- the data-plane URL (SSRF guard) -----------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://api.segment.io",
        "https://events.eu1.segmentapis.com/",
        "https://dataplane.example.com/segment",
        "https://8.8.8.8",
        "https://[2606:4700::1111]/",
    ],
)
def test_data_plane_url_accepted(url: str) -> None:
    assert check_data_plane_url(url) is None


@pytest.mark.parametrize(
    "url, reason",
    [
        ("", "Enter the data-plane URL"),
        ("dataplane.example.com", "starting with https://"),
        ("ftp://dataplane.example.com", "starting with https://"),
        ("javascript:alert(1)", "starting with https://"),
        ("https://", "starting with https://"),
        ("http://dataplane.example.com", "Use https://"),
        ("http://localhost.evil.example", "Use https://"),
        ("http://10.0.0.5", "Use https://"),
        # Loopback only with the explicit opt-in, on any port and scheme.
        ("http://localhost:8080", "Use https://"),
        ("http://127.0.0.1:5000/", "Use https://"),
        ("http://[::1]:9000", "Use https://"),
        ("https://localhost", "Internal addresses"),
        ("https://localhost.:8443", "Internal addresses"),
        ("https://127.0.0.1:6379", "Internal addresses"),
        ("https://[::1]", "Internal addresses"),
        # Special-purpose ranges, also inside IPv6 forms.
        ("https://[64:ff9b::a00:1]", "Internal addresses"),  # NAT64 of 10.0.0.1
        ("https://[64:ff9b::808:808]", "Internal addresses"),  # NAT64, even public
        ("https://[64:ff9b:1::a00:1]", "Internal addresses"),
        ("https://[2002:a00:1::]", "Internal addresses"),  # 6to4 of 10.0.0.1
        ("https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "Internal addresses"),
        ("https://[::a00:1]", "Internal addresses"),  # IPv4-compatible
        ("https://[::]", "Internal addresses"),
        ("https://[100::1]", "Internal addresses"),  # discard-only
        ("https://[2001:db8::1]", "Internal addresses"),  # documentation
        ("https://192.0.0.8", "Internal addresses"),
        ("https://198.18.0.1", "Internal addresses"),  # benchmarking
        ("https://203.0.113.7", "Internal addresses"),  # documentation
        ("https://240.0.0.1", "Internal addresses"),  # reserved
        ("https://255.255.255.255", "Internal addresses"),
        ("https://10.0.0.5", "Internal addresses"),
        ("https://10.0.0.5./", "Internal addresses"),
        ("https://192.168.1.10:8443", "Internal addresses"),
        ("https://172.16.0.1", "Internal addresses"),
        ("https://169.254.169.254/latest/meta-data", "Internal addresses"),
        ("https://127.0.0.2", "Internal addresses"),
        ("https://0.0.0.0", "Internal addresses"),
        ("https://100.64.0.1", "Internal addresses"),
        ("https://224.0.0.1", "Internal addresses"),
        ("https://[fe80::1]", "Internal addresses"),
        ("https://[fd00::1]", "Internal addresses"),
        ("https://[::ffff:10.0.0.1]", "Internal addresses"),
        ("https://[::ffff:127.0.0.1]", "Internal addresses"),
        ("https://2130706433", "Internal addresses"),  # 127.0.0.1 as one number
        ("https://0x7f.1", "Internal addresses"),
        ("https://127.1", "Internal addresses"),
        ("https://0177.0.0.1", "Internal addresses"),
        ("https://metadata.localhost", "Internal addresses"),
        ("https://user:pw@dataplane.example.com", "credentials"),
        ("https://user@dataplane.example.com", "credentials"),
        ("https://dataplane.example.com/?k=v", "query or fragment"),
        ("https://dataplane.example.com/#x", "query or fragment"),
        ("https://dataplane.example.com:99999", "valid URL"),
        ("https://[::1", "valid URL"),
        ("https://data plane.example.com", "spaces or control"),
        ("https://dataplane.example.com/\x00", "spaces or control"),
        ("https://d.example.com/" + "a" * 2100, "longer than 2048"),
    ],
)
def test_data_plane_url_refused(url: str, reason: str) -> None:
    assert reason in (check_data_plane_url(url) or "")


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.5:8080",
        "https://169.254.169.254",
        "http://dp.internal",
        "https://127.0.0.2",
        "http://127.0.0.1:5000/",
        "http://localhost:8080",
        "https://[::1]:9000",
    ],
)
def test_private_hosts_allowed_when_configured(url: str) -> None:
    assert check_data_plane_url(url) is not None
    assert check_data_plane_url(url, allow_private=True) is None


@pytest.mark.parametrize(
    "host, address",
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("::ffff:192.168.0.1", "192.168.0.1"),
        ("fe80::1", "fe80::1"),
        ("example.com", None),
        ("123.example.com", None),
        ("deadbeef", None),
    ],
)
def test_ip_literal(host: str, address: str | None) -> None:
    expected = ipaddress.ip_address(address) if address else None
    assert ip_literal(host) == expected


def test_parse_survey_ids() -> None:
    assert parse_survey_ids(" a ,b\n\n c \r\n,") == ["a", "b", "c"]
    assert parse_survey_ids(None) == []


# -- SettingsForm ------------------------------------------------------------


def test_valid_form(form_app: Flask) -> None:
    form = settings_form(form_app, write_key="  wk_123  ", track_event="  Done ")
    assert form.errors == {}
    assert form.write_key.data == "wk_123"  # pasted whitespace trimmed
    assert form.track_event.data == "Done"
    assert form.survey_ids() is None


@pytest.mark.parametrize("prefix", ["", "refiner_", "_x", "x", "a" * 40, "nps2026_"])
def test_trait_prefix_accepted(form_app: Flask, prefix: str) -> None:
    assert "trait_prefix" not in settings_form(form_app, trait_prefix=prefix).errors


@pytest.mark.parametrize(
    "prefix", ["1abc", "Refiner_", "a-b", "a b", "ré_", "a" * 41, "x.y", "a\x00"]
)
def test_trait_prefix_refused(form_app: Flask, prefix: str) -> None:
    errors = settings_form(form_app, trait_prefix=prefix).errors
    assert "lowercase letters" in errors["trait_prefix"][0]


@pytest.mark.parametrize(
    "value, message",
    [
        ("", "Enter the event name"),
        ("   ", "Enter the event name"),
        ("x" * 201, "at most 200"),
        ("Survey\nCompleted", "Control characters"),
    ],
)
def test_track_event_refused(form_app: Flask, value: str, message: str) -> None:
    assert (
        message in settings_form(form_app, track_event=value).errors["track_event"][0]
    )


def test_track_event_limits_accepted(form_app: Flask) -> None:
    for value in ("x", "x" * 200, "Umfrage abgeschlossen ✓"):
        assert settings_form(form_app, track_event=value).errors == {}


@pytest.mark.parametrize(
    "key, message",
    [
        ("k" * 201, "at most 200"),
        ("wk 123", "cannot contain spaces"),
        ("wk\t1", "Control characters"),
        ("wk\x001", "Control characters"),
    ],
)
def test_write_key_refused_without_echo(
    form_app: Flask, key: str, message: str
) -> None:
    errors = settings_form(form_app, write_key=key).errors["write_key"]
    assert message in errors[0] and key not in errors[0]


def test_blank_write_key_is_fine(form_app: Flask) -> None:
    assert settings_form(form_app, write_key="").errors == {}


def test_region_validation(form_app: Flask) -> None:
    assert "region" in settings_form(form_app, region="mars").errors
    form = settings_form(form_app, region="custom", custom_api_host="http://10.0.0.1")
    assert "Use https://" in form.errors["custom_api_host"][0]
    # The URL is only checked for the custom region.
    assert settings_form(form_app, region="eu", custom_api_host="junk").errors == {}
    form = settings_form(
        form_app, region="custom", custom_api_host="http://10.0.0.1", allow_private=True
    )
    assert form.errors == {}


def test_survey_selection(form_app: Flask) -> None:
    form = settings_form(
        form_app,
        send_all="selected",
        offer=["nps-2026", "onboarding"],
        surveys=["onboarding"],
        other_surveys="churn\nnps-2026, churn",
    )
    assert form.errors == {}
    assert form.survey_ids() == ["churn", "nps-2026", "onboarding"]
    # "All surveys" ignores the ticks.
    form = settings_form(form_app, send_all="all", surveys=["onboarding"])
    assert form.survey_ids() is None


@pytest.mark.parametrize(
    "other, message",
    [
        ("", "Select at least one survey"),
        ("x" * 256, "at most 255"),
        ("\n".join(f"s{i}" for i in range(1001)), "At most 1000"),
        ("x" * 20_001, "20,000"),
    ],
)
def test_survey_selection_refused(form_app: Flask, other: str, message: str) -> None:
    form = settings_form(form_app, send_all="selected", other_surveys=other)
    assert message in " ".join(form.errors["other_surveys"])


def test_webhook_secret_form(form_app: Flask) -> None:
    def run(**data: str) -> WebhookSecretForm:
        with form_app.test_request_context(method="POST", data=data):
            form = WebhookSecretForm()
            form.validate()
            return form

    assert run(secret=" s3cret ").secret.data == "s3cret"
    assert run(secret="").errors == {}
    assert "at most 200" in run(secret="s" * 201).errors["secret"][0]
    assert "Control characters" in run(secret="a\x00b").errors["secret"][0]
