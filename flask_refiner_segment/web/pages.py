"""What every page of the extension shares: the host's guard, the base
template, and headers that keep the pages out of caches."""

from __future__ import annotations

import typing as t

from flask import Blueprint
from flask import Response
from flask import abort
from flask import request

from ..state import get_state


def protect(bp: Blueprint) -> Blueprint:
    """Ask the host's guard before every request of ``bp`` (403 without one),
    give its templates the configured base template, and mark its pages
    ``no-store``."""

    @bp.before_request
    def guard() -> None:
        if not get_state().is_allowed():
            abort(403)

    @bp.after_request
    def no_store(response: Response) -> Response:
        # A page may hold a freshly generated inbound key: keep it out of caches.
        if not (request.endpoint or "").endswith(".static"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @bp.context_processor
    def base_template() -> dict[str, t.Any]:
        return {"refiner_segment_base_template": get_state().config.base_template}

    return bp
