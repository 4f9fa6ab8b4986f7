"""The settings page: write key, region, delivery log, inbound key."""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from flask import Blueprint
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for

from . import delivery
from . import models
from . import queue as _queue
from . import workspaces
from .crypto import SecretUnavailable
from .crypto import mask
from .extension import _get_state
from .forms import ActionForm
from .forms import SettingsForm

if t.TYPE_CHECKING:
    from .extension import RefinerSegment
    from .extension import _State

PER_PAGE = 50


def make_blueprint(ext: RefinerSegment) -> Blueprint:
    """The settings blueprint; every route asks the host's guard first."""
    bp = Blueprint(
        "refiner_segment",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )

    @bp.before_request
    def guard() -> None:
        if not ext.is_allowed():
            abort(403)

    @bp.context_processor
    def base_template() -> dict[str, t.Any]:
        return {"refiner_segment_base_template": _get_state().config.base_template}

    @bp.get("/")
    def settings() -> str:
        state = _get_state()
        ws = ext.current_workspace()
        form = SettingsForm(formdata=None)
        _fill(form, state, ws)
        new_key = None
        if not _has_inbound_key(state, ws):
            new_key = workspaces.rotate_inbound_key(state, ws)  # first view
        return _render(state, ws, form, new_inbound_key=new_key)

    @bp.post("/")
    def save() -> t.Any:
        state = _get_state()
        ws = ext.current_workspace()
        form = SettingsForm()
        if not form.validate():
            return _render(state, ws, form), 400
        session = state.db.session
        row = workspaces.get_or_create(state, session, ws)
        current = workspaces.load(state, ws, fresh=True)
        if form.write_key.data and current.write_key_source != "config":
            workspaces.set_write_key(state, row, form.write_key.data.strip())
        row.enabled = bool(form.enabled.data)
        if not current.api_host_from_config:
            row.region = form.region.data
            row.custom_api_host = (
                form.custom_api_host.data.strip()
                if form.region.data == "custom"
                else None
            )
        row.track_event = form.track_event.data.strip()
        row.trait_prefix = form.trait_prefix.data or ""
        row.surveys = form.survey_ids()
        if form.clear_webhook_secret.data:
            row.webhook_secret_encrypted = None
        elif form.webhook_secret.data:
            row.webhook_secret_encrypted = state.box.encrypt(form.webhook_secret.data)
        session.commit()
        workspaces.invalidate(state, ws)
        _queue.kick(state, ws)  # deliveries that waited (e.g. for a new key) go now
        flash("Settings saved.", "success")
        return redirect(url_for(".settings"))

    @bp.post("/test")
    def send_test() -> t.Any:
        state = _get_state()
        if not ActionForm().validate():
            abort(400, "The form expired; reload the page.")
        try:
            result = delivery.send_test(state, ext.current_workspace())
        except LookupError as exc:
            flash(f"Test event not sent: {exc}", "error")
            return redirect(url_for(".settings"))
        if result.status_code is None:
            flash(f"Test event failed: {result.error}", "error")
        else:
            body = result.body[:300] or "(empty body)"
            level = "success" if result.outcome == "ok" else "error"
            verdict = "accepted" if result.outcome == "ok" else "refused"
            flash(
                f"Segment {verdict} the test event: HTTP {result.status_code} {body}",
                level,
            )
        return redirect(url_for(".settings"))

    @bp.post("/retry-failed")
    def retry_failed() -> t.Any:
        if not ActionForm().validate():
            abort(400, "The form expired; reload the page.")
        n = delivery.retry_failed(_get_state(), ext.current_workspace())
        flash(f"{n} failed deliveries queued again.", "success")
        return redirect(url_for(".settings"))

    @bp.post("/rotate-key")
    def rotate_key() -> t.Any:
        state = _get_state()
        ws = ext.current_workspace()
        if not ActionForm().validate():
            abort(400, "The form expired; reload the page.")
        key = workspaces.rotate_inbound_key(state, ws)
        form = SettingsForm(formdata=None)
        _fill(form, state, ws)
        # Shown once, in this response only (no redirect, no cookie).
        return _render(state, ws, form, new_inbound_key=key)

    return bp


def _row(state: _State, ws: str) -> t.Any:
    model = state.models.Workspace
    return state.db.session.execute(
        sa.select(model).where(model.workspace_id == ws)
    ).scalar_one_or_none()


def _has_inbound_key(state: _State, ws: str) -> bool:
    if state.config.inbound_api_key and ws == state.config.default_workspace:
        return True
    row = _row(state, ws)
    return bool(row is not None and row.inbound_key_hash)


def _fill(form: SettingsForm, state: _State, ws: str) -> None:
    settings = workspaces.load(state, ws, fresh=True)
    form.enabled.data = settings.enabled
    form.region.data = settings.region
    form.custom_api_host.data = settings.custom_api_host or ""
    form.track_event.data = settings.track_event
    form.trait_prefix.data = settings.trait_prefix
    form.send_all.data = "all" if settings.surveys is None else "selected"
    form.surveys.data = "\n".join(sorted(settings.surveys or ()))


def _render(
    state: _State, ws: str, form: SettingsForm, *, new_inbound_key: str | None = None
) -> str:
    settings = workspaces.load(state, ws, fresh=True)
    row = _row(state, ws)
    status = request.args.get("status")
    if status not in models.STATUSES:
        status = None
    page = max(1, request.args.get("page", 1, type=int) or 1)
    table = state.models.Delivery.__table__
    query = sa.select(table).where(table.c.workspace_id == ws)
    if status:
        query = query.where(table.c.status == status)
    rows = state.db.session.execute(
        query.order_by(table.c.id.desc())
        .limit(PER_PAGE + 1)
        .offset((page - 1) * PER_PAGE)
    ).all()
    seen_surveys = state.db.session.execute(
        sa.select(table.c.survey_id)
        .where(table.c.workspace_id == ws, table.c.survey_id.is_not(None))
        .distinct()
        .limit(100)
    ).scalars()
    secret_hint = None
    if row is not None and row.webhook_secret_encrypted:
        try:
            secret_hint = mask(state.box.decrypt(row.webhook_secret_encrypted))
        except SecretUnavailable:
            secret_hint = "(cannot be decrypted: set it again)"
    config = state.config
    return render_template(
        "refiner_segment/settings.html",
        form=form,
        action=ActionForm(),
        settings=settings,
        counts=delivery.counts(state, ws),
        deliveries=rows[:PER_PAGE],
        page=page,
        has_next=len(rows) > PER_PAGE,
        status=status,
        statuses=models.STATUSES,
        seen_surveys=sorted(seen_surveys),
        workspace_id=ws,
        inbound_url=request.url_root.rstrip("/")
        + config.url_prefix
        + config.inbound_path,
        inbound_key_from_config=bool(
            config.inbound_api_key and ws == config.default_workspace
        ),
        inbound_key_hint=mask(None, row.inbound_key_hint) if row is not None else "",
        new_inbound_key=new_inbound_key,
        webhook_secret_hint=secret_hint,
    )
