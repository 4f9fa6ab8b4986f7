"""The segments page: list, create, edit (rule builder or JSON), delete, and a
live preview."""

from __future__ import annotations

import json
import typing as t

from flask import Blueprint
from flask import abort
from flask import flash
from flask import jsonify
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from ..state import get_state
from . import builder as rows
from . import service as api
from .forms import DeleteForm
from .forms import SegmentForm
from .rules import SegmentRuleError
from .rules import parse_rules
from .rules import validate_rules

SAMPLE = 10
#: A new segment starts with one empty row.
NEW_RULES = {
    "match": "all",
    "conditions": [{"kind": "trait", "key": "", "op": "eq"}],
}


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
        rows_ = [(s, _count_or_error(s)) for s in api.list_segments(ws)]
        return render_template(
            "refiner_segment/segments/list.html", rows=rows_, delete_form=DeleteForm()
        )

    def _edit(segment: t.Any) -> t.Any:
        ws = get_state().current_workspace()
        form = SegmentForm()
        edit = Edit.from_request(form, segment)
        preview = None
        if request.method == "POST" and edit.action in ("save", "preview"):
            valid = form.validate() & edit.check()
            if valid and edit.action == "preview":
                preview = _preview(edit.rules, ws)
            elif valid:
                try:
                    if segment is None:
                        api.create_segment(form.name.data, edit.rules, workspace_id=ws)
                    else:
                        api.update_segment(
                            segment.id,
                            name=form.name.data,
                            rules=edit.rules,
                            workspace_id=ws,
                        )
                except SegmentRuleError as exc:
                    form.name.errors = [*form.name.errors, *[m for _, m in exc.errors]]
                else:
                    verb = "created" if segment is None else "saved"
                    flash(f"Segment “{form.name.data.strip()}” {verb}.", "success")
                    return redirect(url_for(".index"))
        failed = request.method == "POST" and (
            bool(form.errors) or any(f.errors for f in form) or edit.has_errors
        )
        return render_template(
            "refiner_segment/segments/edit.html",
            form=form,
            segment=segment,
            preview=preview,
            edit=edit,
            kinds=rows.KIND_LABELS,
            ops=rows.OP_LABELS,
        ), (400 if failed else 200)

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
        ws = get_state().current_workspace()
        segment = api.get_segment(segment_id, ws)
        if segment is None or not api.delete_segment(segment_id, ws):
            abort(404)
        flash(f"Segment “{segment.name}” deleted.", "success")
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

    @bp.post("/preview")
    def preview_form() -> t.Any:
        """The edit form as posted: ``{"count", "sample", "rules"}``, or
        ``{"errors": {row id: [message]}, "form_errors": [...]}`` (400)."""
        edit = Edit.from_request(SegmentForm(), None)
        if not edit.check():
            return jsonify(
                {"errors": edit.row_errors, "form_errors": edit.form_errors}
            ), 400
        return jsonify(
            {
                **_preview(edit.rules, get_state().current_workspace()),
                "rules": json.dumps(edit.rules, indent=2, ensure_ascii=False),
            }
        )

    return bp


class Edit:
    """The rules being edited: in the builder (rows) or as JSON text."""

    def __init__(self, form: SegmentForm, mode: str, builder: rows.Builder | None):
        self.form = form
        self.mode = mode
        self.builder = builder
        self.action = ""
        self.rules: dict[str, t.Any] = {}
        self.row_errors: dict[str, list[str]] = {}
        self.form_errors: list[str] = []
        #: Why the JSON could not be shown in the builder.
        self.note: str | None = None

    @classmethod
    def from_request(cls, form: SegmentForm, segment: t.Any) -> Edit:
        if request.method != "POST":
            rules = segment.rules if segment is not None else NEW_RULES
            form.name.data = segment.name if segment is not None else ""
            form.rules.data = json.dumps(rules, indent=2, ensure_ascii=False)
            builder = rows.to_builder(rules)
            edit = cls(form, "builder" if builder else "json", builder)
            if builder is None:
                edit.note = _NOT_IN_BUILDER
            return edit
        # A post without "editor" is the JSON form of earlier versions.
        mode = request.form.get("editor", "json")
        builder = rows.read_form(request.form) if mode == "builder" else None
        edit = cls(form, "builder" if builder else "json", builder)
        edit.action = request.form.get("action", "save")
        edit._apply(edit.action)
        return edit

    def _apply(self, action: str) -> None:
        """Add, remove, or switch between the builder and JSON."""
        verb, _, target = action.partition(":")
        if self.builder is not None:
            if verb == "add":
                self.builder.add_row(target or None)
            elif verb == "add-group":
                self.builder.add_group()
            elif verb == "remove":
                self.builder.remove(target)
            elif verb == "json":
                self.form.rules.data = json.dumps(
                    rows.to_rules(self.builder), indent=2, ensure_ascii=False
                )
                self.mode, self.builder = "json", None
        elif verb == "builder":
            try:
                builder = rows.to_builder(json.loads(self.form.rules.data or ""))
            except (ValueError, RecursionError):
                builder = None
            if builder is None:
                self.note = _NOT_IN_BUILDER
            else:
                self.mode, self.builder = "builder", builder

    def check(self) -> bool:
        """Validate the rules; on errors, keep them by row (or for the JSON)."""
        try:
            if self.builder is not None:
                self.rules = validate_rules(rows.to_rules(self.builder))
            else:
                self.rules = parse_rules(self.form.rules.data or "")
        except SegmentRuleError as exc:
            if self.builder is not None:
                self.row_errors, self.form_errors = rows.row_errors(exc.errors)
            else:
                self.form.rules.errors = [str(exc)]
            return False
        if self.builder is not None:
            self.form.rules.data = json.dumps(self.rules, indent=2, ensure_ascii=False)
        return True

    @property
    def has_errors(self) -> bool:
        return bool(self.row_errors or self.form_errors)


_NOT_IN_BUILDER = (
    "These rules use something the builder does not show (such as an event's"
    " “where”): edit them as JSON."
)


def _count_or_error(segment: api.SavedSegment) -> int | str:
    """The member count, or why the stored rules can't be evaluated (saved
    under older checks or by hand): the page shows it instead of failing."""
    try:
        return api.count(segment)
    except SegmentRuleError as exc:
        return f"invalid rules: {exc}"
