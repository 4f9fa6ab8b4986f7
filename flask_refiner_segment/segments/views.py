"""The segments page: list, create, edit, delete, and a live preview."""

from __future__ import annotations

import json
import typing as t

from flask import Blueprint
from flask import abort
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from ..state import get_state
from . import service as api
from .forms import DeleteForm
from .forms import SegmentForm
from .rules import SegmentRuleError
from .rules import parse_rules

SAMPLE = 10


def make_segments_blueprint() -> Blueprint:
    """The segments pages (the extension protects them with the host's guard)."""
    bp = Blueprint("refiner_segment_segments", __name__, template_folder="templates")

    def _preview(rules: dict[str, t.Any], ws: str) -> dict[str, t.Any]:
        return {
            "count": api.count(rules, workspace_id=ws),
            "sample": api.members(rules, per_page=SAMPLE, workspace_id=ws),
        }

    @bp.get("/")
    def index() -> str:
        ws = get_state().current_workspace()
        rows = [(s, _count_or_error(s)) for s in api.list_segments(ws)]
        return render_template(
            "refiner_segment/segments/list.html", rows=rows, delete_form=DeleteForm()
        )

    def _edit(segment: t.Any) -> t.Any:
        ws = get_state().current_workspace()
        form = SegmentForm(obj=None)
        if request.method == "GET" and segment is not None:
            form.name.data = segment.name
            form.rules.data = json.dumps(segment.rules, indent=2)
        preview = None
        if request.method == "POST" and form.validate_on_submit():
            if request.form.get("action") == "preview":
                preview = _preview(form.parsed, ws)
            else:
                try:
                    if segment is None:
                        api.create_segment(form.name.data, form.parsed, workspace_id=ws)
                    else:
                        api.update_segment(
                            segment.id,
                            name=form.name.data,
                            rules=form.parsed,
                            workspace_id=ws,
                        )
                except SegmentRuleError as exc:
                    form.name.errors = [*form.name.errors, *[m for _, m in exc.errors]]
                else:
                    return redirect(url_for(".index"))
        status = (
            400
            if request.method == "POST" and (form.errors or any(f.errors for f in form))
            else 200
        )
        return render_template(
            "refiner_segment/segments/edit.html",
            form=form,
            segment=segment,
            preview=preview,
        ), status

    @bp.route("/new", methods=["GET", "POST"])
    def create() -> t.Any:
        return _edit(None)

    @bp.route("/<int:segment_id>", methods=["GET", "POST"])
    def edit(segment_id: int) -> t.Any:
        segment = api.get_segment(segment_id, get_state().current_workspace())
        if segment is None:
            abort(404)
        return _edit(segment)

    @bp.post("/<int:segment_id>/delete")
    def delete(segment_id: int) -> t.Any:
        if not DeleteForm().validate_on_submit():
            abort(400, "CSRF token missing or invalid")
        if not api.delete_segment(segment_id, get_state().current_workspace()):
            abort(404)
        return redirect(url_for(".index"))

    @bp.get("/preview")
    def preview() -> t.Any:
        """``?rules=<json>``: ``{"count", "sample"}``, or ``{"errors"}`` (400)."""
        try:
            rules = parse_rules(request.args.get("rules", ""))
        except SegmentRuleError as exc:
            return jsonify(
                {"errors": [{"path": p, "message": m} for p, m in exc.errors]}
            ), 400
        return jsonify(_preview(rules, get_state().current_workspace()))

    return bp


def _count_or_error(segment: api.SavedSegment) -> int | str:
    """The member count, or why the stored rules can't be evaluated (saved
    under older checks or by hand): the page shows it instead of failing."""
    try:
        return api.count(segment)
    except SegmentRuleError as exc:
        return f"invalid rules: {exc}"
