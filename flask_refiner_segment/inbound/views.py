"""``POST {prefix}/inbound``: the route Segment calls as a destination.

Checks run cheapest first: Content-Length (413), API key (401), the body read
with a cap (413), ``X-Signature`` (401), JSON and every message (400); only
then is anything written. Answers are always JSON; ``message`` is what
Segment's debugger shows.
"""

from __future__ import annotations

import logging
import typing as t

import sqlalchemy as sa
from flask import Blueprint
from flask import Flask
from flask import Response
from flask import current_app
from flask import jsonify
from flask import request
from flask.sansio.blueprints import BlueprintSetupState

from .. import signals
from ..crypto import SecretUnavailable
from ..state import EXTENSION_KEY
from ..state import get_state
from ..tables.base import utcnow
from . import auth
from .body import read_body
from .body import too_large
from .parse import InboundError
from .parse import parse_body
from .store import store

if t.TYPE_CHECKING:
    from ..state import State

logger = logging.getLogger("flask_refiner_segment.inbound")

BLUEPRINT_NAME = "refiner_segment_inbound"

#: Database errors that are worth a retry by Segment (503).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
    sa.exc.InternalError,
)


def make_inbound_blueprint() -> Blueprint:
    """The inbound blueprint; its path comes from each app's config."""
    bp = Blueprint(BLUEPRINT_NAME, __name__)

    def setup(setup_state: BlueprintSetupState) -> None:
        app = t.cast(Flask, setup_state.app)
        path = t.cast("State", app.extensions[EXTENSION_KEY]).config.inbound_path
        setup_state.add_url_rule(
            path,
            "inbound",
            inbound,
            methods=["POST", "GET", "PUT", "PATCH", "DELETE"],
        )
        if "csrf" not in app.extensions:
            _exempt_when_csrf_arrives(app, bp)

    bp.record(setup)
    return bp


def _exempt_when_csrf_arrives(app: Flask, bp: Blueprint) -> None:
    """Exempt ``bp`` from a ``CSRFProtect`` set up after ``init_app``.

    This hook is registered before CSRFProtect's own ``before_request``, so
    it runs first and marks the blueprint exempt in time.
    """

    def exempt_inbound() -> None:
        if request.blueprint == bp.name:
            csrf = current_app.extensions.get("csrf")
            if csrf is not None:
                csrf.exempt(bp)

    app.before_request(exempt_inbound)


def inbound() -> Response:
    """Receive Segment messages; see the module docstring for the order of checks."""
    if request.method != "POST":
        return _answer(
            405,
            {
                "error": "method_not_allowed",
                "message": "Segment sends POST requests here.",
            },
            Allow="POST",
        )
    try:
        return _receive(get_state())
    except InboundError as exc:
        logger.info("Inbound request answered %s: %s", exc.status, exc.message)
        if exc.status >= 500:
            return _answer(exc.status, exc.body(), **{"Retry-After": "10"})
        extra = (
            {"WWW-Authenticate": 'Basic realm="segment"'} if exc.status == 401 else {}
        )
        return _answer(exc.status, exc.body(), **extra)
    except Exception:
        # A bug, not bad input: a JSON 500 (Segment retries it), never an HTML page.
        logger.exception("Inbound request failed.")
        return _answer(
            500, {"error": "internal_error", "message": "Internal error; retry later."}
        )


def _receive(state: State) -> Response:
    limit = state.config.inbound_max_bytes
    if request.content_length is not None and request.content_length > limit:
        raise too_large(limit)
    key = auth.api_key(request.headers.get("Authorization"))
    if key is None:
        raise InboundError(
            401,
            "unauthorized",
            "Missing API key: use Basic auth with the key as username.",
        )
    try:
        found = _db(lambda: auth.authenticate(state, key))
    except SecretUnavailable:
        logger.error("An inbound shared secret cannot be decrypted.")
        raise InboundError(
            503, "unavailable", "The shared secret cannot be read; try again later."
        ) from None
    if found is None:
        raise InboundError(401, "unauthorized", "Unknown API key.")
    workspace_id, secret = found
    body = read_body(limit)
    if secret is not None:
        auth.check_signature(secret, body, request.headers.get("X-Signature"))

    now = utcnow()
    parsed = parse_body(body, now)
    if parsed.unsupported and not parsed.messages:
        kinds = ", ".join(sorted(set(parsed.unsupported)))
        raise InboundError(
            501, "unsupported_type", f"Unsupported message type: {kinds}."
        )
    try:
        counts = _db(
            lambda: store(
                state.db.engine,
                state.tables.inbound,
                workspace_id,
                parsed.messages,
                now,
            )
        )
    except sa.exc.DataError as exc:
        logger.warning("Inbound data rejected by the database: %s", exc.orig)
        raise InboundError(
            400,
            "malformed_message",
            f"A message cannot be stored: {_first_line(exc.orig)}",
        ) from None
    try:
        signals.inbound_received.send(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            workspace_id=workspace_id,
            stored=counts.stored,
            duplicates=counts.duplicates,
            ignored=counts.ignored,
        )
    except Exception:
        logger.exception("An inbound_received receiver failed.")
    return _answer(
        200,
        {
            "stored": counts.stored,
            "duplicates": counts.duplicates,
            "ignored": counts.ignored,
            "unsupported": len(parsed.unsupported),
        },
    )


T = t.TypeVar("T")


def _db(func: t.Callable[[], T]) -> T:
    """Run database work; transient faults become 503 (Segment retries)."""
    try:
        return func()
    except TRANSIENT_ERRORS as exc:
        logger.warning(
            "Inbound storage unavailable: %s", _first_line(getattr(exc, "orig", exc))
        )
        raise InboundError(
            503, "unavailable", "Storage is temporarily unavailable; retry later."
        ) from None


def _first_line(exc: object) -> str:
    return (
        str(exc).strip().splitlines()[0][:200]
        if str(exc).strip()
        else type(exc).__name__
    )


def _answer(status: int, body: dict[str, t.Any], **headers: str) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers)
    return response
