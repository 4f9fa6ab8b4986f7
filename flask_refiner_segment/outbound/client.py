"""HTTP client for Segment's Tracking API (``POST {api_host}/v1/batch``).

One :class:`SegmentClient` per Segment source (write key). :meth:`~SegmentClient.send`
posts one batch and classifies Segment's answer; it never raises for HTTP or
network problems, and the write key never appears in what it returns.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import email.utils
import http
import json
import math
import socket
import ssl
import time
import typing as t
import urllib.parse
from collections.abc import Mapping
from collections.abc import Sequence

import requests
import requests.auth
import urllib3.exceptions

from ..config import library_version
from ..core.values import iso_utc
from ..crypto import MASK
from ..crypto import mask

#: ``ok``: 2xx. ``retry``: network error, timeout, 408, 429, 5xx except 501/505.
#: ``unauthorized``: 401/403, the write key was rejected. ``permanent``: the rest.
Outcome = t.Literal["ok", "retry", "permanent", "unauthorized"]

_BODY_MAX = 2000
_SNIPPET_MAX = 200


def classify_status(status: int) -> Outcome:
    """Classify an HTTP status as the README's retry policy says.

    2xx is ``ok``; 401/403 ``unauthorized``; 408, 429 and 5xx except 501/505
    ``retry``; every other status ``permanent`` (3xx too: redirects are not
    followed). Segment's libraries also retry 410 and 460 and not 511; the
    documented policy is the authority here, so 410/460 are permanent and 511
    is retried.
    """
    if 200 <= status < 300:
        return "ok"
    if status in (401, 403):
        return "unauthorized"
    if status in (408, 429) or (500 <= status < 600 and status not in (501, 505)):
        return "retry"
    return "permanent"


def parse_retry_after(value: str | None, cap: float = 300.0) -> float | None:
    """Seconds from a ``Retry-After`` value (delay-seconds or HTTP-date),
    within ``0..cap``; ``None`` when absent or invalid."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, cap)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, breadth first (requests and urllib3 wrap)."""
    found: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(found) < 20:
        current = todo.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        reason = getattr(current, "reason", None)
        candidates = [reason, current.__cause__, current.__context__, *current.args]
        todo.extend(c for c in candidates if isinstance(c, BaseException))
    return found


def _is_wrapper(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("requests", "urllib3")


class _BasicHeader(requests.auth.AuthBase):
    """Sets a precomputed Basic header; also stops ``~/.netrc`` replacing it."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Basic {self.token}"
        return r


@dataclasses.dataclass(frozen=True)
class SendResult:
    """Segment's answer to one batch request, classified."""

    #: What the caller should do with the batch.
    outcome: Outcome
    #: The HTTP status, ``None`` when no answer arrived (network error, timeout).
    status_code: int | None
    #: The response body, at most 2,000 characters, write key scrubbed.
    body: str
    #: A one-line description for logs and the settings page; ``""`` when ok.
    error: str
    #: ``Retry-After`` in seconds, capped by the client; ``None`` when absent.
    retry_after: float | None = None
    #: Seconds the request took.
    elapsed: float = 0.0


class SegmentClient:
    """Sends batches to one Segment source.

    :param api_host: base URL without ``/v1``, e.g. :data:`US_HOST`.
    :param write_key: the source's write key, sent as Basic auth and as the
        body's ``writeKey`` (Segment takes either, RudderStack only Basic).
    :param session: a :class:`requests.Session` to reuse; it is not closed by
        :meth:`close`. By default the client has its own.
    """

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
        self.api_host = api_host.strip().rstrip("/")
        self.url = self.api_host + "/v1/batch"
        self._write_key = write_key
        self._basic = base64.b64encode(f"{write_key}:".encode()).decode("ascii")
        self._auth = _BasicHeader(self._basic)
        secrets = {
            write_key,
            self._basic,
            urllib.parse.quote(write_key, safe=""),
            urllib.parse.quote_plus(write_key),
        }
        # Longest first, so a secret containing another is replaced whole.
        self._secrets = sorted(secrets, key=len, reverse=True) if write_key else []
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry_after_cap = retry_after_cap
        self._own_session = session is None
        self.session = session if session is not None else requests.Session()
        self.user_agent = user_agent or f"flask-refiner-segment/{library_version()}"

    def __repr__(self) -> str:
        # A short key is hidden entirely: four characters of six is most of it.
        shown = mask(self._write_key) if len(self._write_key) >= 12 else MASK
        return f"<SegmentClient {self._scrub(self.url)} key={shown}>"

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def send(
        self, messages: Sequence[Mapping[str, t.Any]], *, attempt: int = 0
    ) -> SendResult:
        """POST one batch and classify the answer.

        ``sentAt`` is set now, on every call; ``attempt > 0`` adds
        ``X-Retry-Count``. ``messages`` are not modified. Never raises for
        network or HTTP problems: those are a ``retry`` result with
        ``status_code=None``. Raises :exc:`TypeError` or :exc:`ValueError`
        when the messages cannot be encoded as JSON (nothing is sent then).
        """
        body = json.dumps(
            {
                "batch": list(messages),
                "sentAt": iso_utc(dt.datetime.now(dt.timezone.utc)),
                "writeKey": self._write_key,
            },
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        ).encode()
        headers = {"Content-Type": "application/json", "User-Agent": self.user_agent}
        if attempt > 0:
            headers["X-Retry-Count"] = str(attempt)
        started = time.monotonic()
        try:
            response = self.session.post(
                self.url,
                data=body,
                headers=headers,
                auth=self._auth,
                timeout=(self.connect_timeout, self.read_timeout),
                allow_redirects=False,
            )
        except Exception as exc:  # never raise for a request that failed
            return SendResult(
                "retry",
                None,
                "",
                self._scrub(self._describe(exc)),
                None,
                time.monotonic() - started,
            )
        elapsed = time.monotonic() - started
        return self._result(response, elapsed)

    def _result(self, response: requests.Response, elapsed: float) -> SendResult:
        status = response.status_code
        # Scrub before cutting, so a key across the cut is still replaced.
        raw = response.content[: _BODY_MAX * 4 + 4 * len(self._basic)]
        text = self._scrub(raw.decode("utf-8", "replace"))[:_BODY_MAX]
        outcome = classify_status(status)
        error = "" if outcome == "ok" else self._scrub(self._http_error(response, text))
        retry_after = parse_retry_after(
            response.headers.get("Retry-After"), self.retry_after_cap
        )
        return SendResult(outcome, status, text, error, retry_after, elapsed)

    def _http_error(self, response: requests.Response, text: str) -> str:
        status = response.status_code
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = response.reason or "Unknown Status"
        error = f"HTTP {status}: {phrase}"
        if 300 <= status < 400:
            location = response.headers.get("Location", "")
            return f"{error} to {location or '?'} (redirects are not followed)"
        detail = text
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict):
            code = data.get("code")
            if isinstance(code, str) and code.replace("_", " ").lower() == (
                phrase.lower()
            ):
                code = None  # "unauthorized" says the phrase again
            parts = [code, data.get("message") or data.get("error")]
            detail = " ".join(p for p in parts if isinstance(p, str) and p) or text
        detail = " ".join(detail.split())
        if len(detail) > _SNIPPET_MAX:
            detail = detail[:_SNIPPET_MAX] + "…"
        return f"{error} ({detail})" if detail else error

    def _describe(self, exc: Exception) -> str:
        """A one-line cause for a request that got no HTTP answer."""
        chain = _chain(exc)
        url = self.url
        if isinstance(exc, requests.ConnectTimeout):
            return f"connect timed out after {self.connect_timeout:g}s: {url}"
        timeouts = (TimeoutError, urllib3.exceptions.ReadTimeoutError)
        if isinstance(exc, requests.Timeout) or any(
            isinstance(e, timeouts) for e in chain
        ):  # also a body that stops arriving, which requests calls ConnectionError
            return f"timed out after {self.read_timeout:g}s waiting for {url}"
        if any(isinstance(e, ConnectionRefusedError) for e in chain) or (
            "refused" in str(exc).lower()
        ):
            return f"connection refused: {url}"
        if any(
            isinstance(e, socket.gaierror) or type(e).__name__ == "NameResolutionError"
            for e in chain
        ):
            return f"could not resolve host: {url}"
        tls = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
        if tls is not None or isinstance(exc, requests.exceptions.SSLError):
            detail = str(tls or exc).splitlines()[0][:_SNIPPET_MAX]
            return f"TLS error: {url} ({detail})"
        if isinstance(exc, requests.exceptions.ProxyError):
            return f"proxy error: {url}"
        if isinstance(
            exc,
            (
                requests.exceptions.InvalidURL,
                requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema,
            ),
        ):
            return f"invalid API host URL: {url}"
        root = next((e for e in reversed(chain) if not _is_wrapper(e)), exc)
        detail = type(root).__name__
        if str(root):
            detail += f": {str(root).splitlines()[0][:_SNIPPET_MAX]}"
        if isinstance(exc, requests.ConnectionError):
            return f"connection failed: {url} ({detail})"
        return f"request failed: {url} ({detail})"

    def close(self) -> None:
        """Close the client's own session (a session passed in stays open)."""
        if self._own_session:
            self.session.close()
