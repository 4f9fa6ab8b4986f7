"""HTTP client for Segment's Tracking API (``POST /v1/batch``)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import email.utils
import importlib.metadata
import json
import time
import typing as t
from collections.abc import Mapping
from collections.abc import Sequence

import requests

from .crypto import mask
from .values import iso_utc

US_HOST = "https://api.segment.io"
EU_HOST = "https://events.eu1.segmentapis.com"

Outcome = t.Literal["ok", "retry", "permanent", "unauthorized"]


def resolve_api_host(region: str, custom_url: str | None = None) -> str:
    """The base URL for ``"us"``, ``"eu"`` or ``"custom"`` (a data-plane URL)."""
    if region == "us":
        return US_HOST
    if region == "eu":
        return EU_HOST
    if region == "custom":
        if not custom_url:
            raise ValueError("A custom data-plane URL is required for region 'custom'.")
        return custom_url.rstrip("/")
    raise ValueError(f"Unknown region {region!r}: use 'us', 'eu' or 'custom'.")


def classify_status(status: int) -> Outcome:
    """SPEC §3: 2xx ok; 401/403 bad key; 408, 429, 5xx but 501/505 retried."""
    if 200 <= status < 300:
        return "ok"
    if status in (401, 403):
        return "unauthorized"
    if status in (408, 429) or (500 <= status < 600 and status not in (501, 505)):
        return "retry"
    return "permanent"


def _parse_retry_after(value: str | None, cap: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = (when - dt.datetime.now(dt.timezone.utc)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), cap)


@dataclasses.dataclass(frozen=True)
class SendResult:
    """Segment's answer to one batch request, classified."""

    outcome: Outcome
    status_code: int | None
    body: str
    error: str
    retry_after: float | None = None
    elapsed: float = 0.0


def _version() -> str:
    try:
        return importlib.metadata.version("flask-refiner-segment")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


class SegmentClient:
    """Sends batches to one Segment source; never raises for HTTP or network errors."""

    def __init__(
        self,
        api_host: str,
        write_key: str,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 10.0,
        retry_after_cap: float = 300.0,
        session: requests.Session | None = None,
        user_agent: str | None = None,
    ) -> None:
        self.url = api_host.rstrip("/") + "/v1/batch"
        self._write_key = write_key
        self._basic = base64.b64encode(f"{write_key}:".encode()).decode()
        self.timeout = (connect_timeout, read_timeout)
        self.retry_after_cap = retry_after_cap
        self.session = session or requests.Session()
        self.user_agent = user_agent or f"flask-refiner-segment/{_version()}"

    def __repr__(self) -> str:
        return f"<SegmentClient {self.url} key={mask(self._write_key)}>"

    def _scrub(self, text: str) -> str:
        for secret in (self._write_key, self._basic):
            if secret:
                text = text.replace(secret, "••••")
        return text

    def send(
        self, messages: Sequence[Mapping[str, t.Any]], *, attempt: int = 0
    ) -> SendResult:
        """POST one batch; ``sentAt`` is set now, on every attempt."""
        body = json.dumps(
            {
                "batch": list(messages),
                "sentAt": iso_utc(dt.datetime.now(dt.timezone.utc)),
                "writeKey": self._write_key,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Basic {self._basic}",
            "User-Agent": self.user_agent,
        }
        if attempt > 0:
            headers["X-Retry-Count"] = str(attempt)
        started = time.monotonic()
        try:
            response = self.session.post(
                self.url, data=body, headers=headers, timeout=self.timeout
            )
        except requests.Timeout:
            return SendResult(
                "retry",
                None,
                "",
                f"timed out after {self.timeout[1]:g}s ({self.url})",
                elapsed=time.monotonic() - started,
            )
        except requests.ConnectionError as exc:
            reason = (
                "connection refused"
                if "refused" in str(exc).lower()
                else "connection failed"
            )
            return SendResult(
                "retry",
                None,
                "",
                self._scrub(f"{reason}: {self.url}"),
                elapsed=time.monotonic() - started,
            )
        except requests.RequestException as exc:
            return SendResult(
                "retry",
                None,
                "",
                self._scrub(f"request failed ({type(exc).__name__}): {self.url}"),
                elapsed=time.monotonic() - started,
            )
        status = response.status_code
        text = self._scrub(response.text[:2000])
        outcome = classify_status(status)
        error = (
            "" if outcome == "ok" else f"HTTP {status} {response.reason or ''}".strip()
        )
        return SendResult(
            outcome,
            status,
            text,
            error,
            _parse_retry_after(
                response.headers.get("Retry-After"), self.retry_after_cap
            ),
            time.monotonic() - started,
        )

    def close(self) -> None:
        self.session.close()
