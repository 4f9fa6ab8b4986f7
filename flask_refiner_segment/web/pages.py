"""What every page of the extension shares: the host's guard, the base
template, and headers that keep the pages out of caches and out of frames."""

from __future__ import annotations

import typing as t

from flask import Blueprint
from flask import Response
from flask import abort
from flask import request

from ..state import get_state


def protect(bp: Blueprint) -> Blueprint:
    """Ask the host's guard before every request of ``bp`` (403 without one),
    give its templates the configured base template, and send its pages with
    ``no-store`` and security headers (a header the host sets itself wins)."""

    @bp.before_request
    def guard() -> None:
        if not get_state().is_allowed():
            abort(403)
        if request.method == "POST" and request.is_json:
            # Flask-WTF reads a JSON body as the form: only an object can be one.
            data = request.get_json(silent=True)
            if data is not None and not isinstance(data, dict):
                abort(400, "A JSON body must be an object of form fields.")

    @bp.after_request
    def headers(response: Response) -> Response:
        if (request.endpoint or "").endswith(".static"):
            return response
        # A page may hold a freshly generated inbound key: keep it out of caches.
        response.headers["Cache-Control"] = "no-store"
        policy = get_state().config.content_security_policy
        if policy:
            response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("X-Frame-Options", "SAMEORIGIN")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @bp.context_processor
    def base_template() -> dict[str, t.Any]:
        return {"refiner_segment_base_template": get_state().config.base_template}

    return bp
