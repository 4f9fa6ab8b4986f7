"""The settings page: write key, region, delivery log, inbound key."""

from __future__ import annotations

import http
import logging
import math
import typing as t

import sqlalchemy as sa
from flask import Blueprint
from flask import Response
from flask import abort
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response as BaseResponse

from . import delivery
from . import models
from . import queue as _queue
from . import workspaces
from .crypto import SecretUnavailable
from .crypto import mask
from .extension import _get_state
from .forms import ActionForm
from .forms import SettingsForm
from .forms import WebhookSecretForm

if t.TYPE_CHECKING:
    from .client import SendResult
    from .extension import RefinerSegment
    from .extension import _State
    from .workspaces import WorkspaceSettings

logger = logging.getLogger("flask_refiner_segment")

#: Deliveries per page of the log.
PER_PAGE = 50
#: How many survey ids seen in deliveries are offered as checkboxes.
MAX_SEEN_SURVEYS = 200
#: ... found among this many latest deliveries.
SURVEY_SCAN = 5000
#: Columns of the delivery log (not the payload).
LOG_COLUMNS = (
    *("id", "status", "response_id", "survey_id", "user_id", "attempts", "reason"),
    *("last_status_code", "created_at", "updated_at", "sent_at", "next_attempt_at"),
)
_FLASH_BODY = 500
_EXPIRED = "The form has expired or its CSRF token is missing: nothing was done."

R = t.TypeVar("R")
Page = str | tuple[str, int] | BaseResponse


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

    @bp.after_request
    def no_store(response: Response) -> Response:
        # The page may hold a freshly generated inbound key: keep it out of caches.
        if request.endpoint != "refiner_segment.static":
            response.headers["Cache-Control"] = "no-store"
        return response

    @bp.context_processor
    def base_template() -> dict[str, t.Any]:
        return {"refiner_segment_base_template": _get_state().config.base_template}

    @bp.get("/")
    def settings() -> Page:
        state = _get_state()
        ws = ext.current_workspace()
        new_key = None
        if not _inbound_key_exists(state, ws):  # generated on first view
            new_key = _retry_once(state, lambda: _rotate(state, ws, "generated"))
        return _render(state, ws, new_inbound_key=new_key)

    @bp.post("/")
    def save() -> Page:
        state = _get_state()
        ws = ext.current_workspace()
        current = workspaces.load(state, ws, fresh=True)
        form = SettingsForm()
        _prepare(form, state, ws, current)
        if not form.validate():
            return _render(state, ws, form=form), 400
        key_changed = _retry_once(state, lambda: _store(state, ws, form, current))
        kicked = _queue.kick(state, ws)  # deliveries that waited go now
        logger.info(
            "Segment settings of workspace %r saved (write key %s).",
            ws,
            "replaced" if key_changed else "unchanged",
        )
        message = "Settings saved."
        if key_changed:
            saved = workspaces.load(state, ws, fresh=True)
            message += f" Write key stored: {saved.write_key_masked}."
        if not kicked:
            message += (
                " Redis is unreachable: waiting deliveries go with the next sweep."
            )
        flash(message, "success" if kicked else "warning")
        return redirect(url_for(".settings"))

    @bp.post("/test")
    def send_test() -> Page:
        state = _get_state()
        ws = ext.current_workspace()
        if not ActionForm().validate():
            return _refuse(state, ws)
        current = workspaces.load(state, ws, fresh=True)
        try:
            result = delivery.send_test(state, ws)
        except LookupError as exc:
            flash(f"Test event not sent: {exc}", "error")
        else:
            level = "success" if result.outcome == "ok" else "error"
            flash(_scrub(describe_result(result), current.write_key), level)
        return redirect(url_for(".settings"))

    @bp.post("/retry-failed")
    def retry_failed() -> Page:
        state = _get_state()
        ws = ext.current_workspace()
        if not ActionForm().validate():
            return _refuse(state, ws)
        n = delivery.retry_failed(state, ws)
        noun = "delivery" if n == 1 else "deliveries"
        flash(f"{n} failed {noun} queued again.", "success")
        return redirect(url_for(".settings"))

    @bp.post("/rotate-key")
    def rotate_key() -> Page:
        state = _get_state()
        ws = ext.current_workspace()
        if not ActionForm().validate():
            return _refuse(state, ws)
        if workspaces.inbound_key_from_config(state, ws):
            flash(
                "The inbound API key is set in app config"
                " (REFINER_SEGMENT_INBOUND_API_KEY): change it there.",
                "error",
            )
            return redirect(url_for(".settings"))
        key = _retry_once(state, lambda: _rotate(state, ws, "rotated"))
        # Shown once, in this response only: no redirect, no cookie.
        return _render(state, ws, new_inbound_key=key)

    @bp.post("/webhook-secret")
    def webhook_secret() -> Page:
        state = _get_state()
        ws = ext.current_workspace()
        secret_form = WebhookSecretForm()
        if not secret_form.validate():
            if secret_form.csrf_token.errors:
                return _refuse(state, ws)
            return _render(state, ws, secret_form=secret_form), 400
        if not secret_form.clear.data and not secret_form.secret.data:
            flash("Shared secret unchanged.", "success")
            return redirect(url_for(".settings"))
        value = None if secret_form.clear.data else secret_form.secret.data
        _retry_once(state, lambda: _store_secret(state, ws, value))
        logger.info(
            "Webhooks shared secret of workspace %r %s.",
            ws,
            "removed" if value is None else "set",
        )
        flash("Shared secret removed." if value is None else "Shared secret saved.")
        return redirect(url_for(".settings"))

    return bp


# -- saving ---------------------------------------------------------------


def _retry_once(state: _State, func: t.Callable[[], R]) -> R:
    """Run ``func``; once more after a unique-key race creating the workspace row."""
    try:
        return func()
    except sa.exc.IntegrityError:
        state.db.session.rollback()
        return func()


def _store(
    state: _State, ws: str, form: SettingsForm, current: WorkspaceSettings
) -> bool:
    """Save the validated form; returns whether the write key was replaced."""
    session = state.db.session
    row = workspaces.get_or_create(state, session, ws)
    key_changed = bool(form.write_key.data) and current.write_key_source != "config"
    if key_changed:
        workspaces.set_write_key(state, row, form.write_key.data)
    row.enabled = bool(form.enabled.data)
    if not current.api_host_from_config:
        row.region = form.region.data
        custom = form.region.data == "custom"
        row.custom_api_host = form.custom_api_host.data if custom else None
    row.track_event = form.track_event.data
    row.trait_prefix = form.trait_prefix.data or ""
    row.surveys = form.survey_ids()
    session.commit()
    workspaces.invalidate(state, ws)
    return key_changed


def _store_secret(state: _State, ws: str, value: str | None) -> None:
    session = state.db.session
    row = workspaces.get_or_create(state, session, ws)
    row.webhook_secret_encrypted = state.box.encrypt(value) if value else None
    session.commit()
    workspaces.invalidate(state, ws)


def _rotate(state: _State, ws: str, verb: str) -> str:
    key = workspaces.rotate_inbound_key(state, ws)
    logger.info("Inbound API key of workspace %r %s.", ws, verb)
    return key


def describe_result(result: SendResult) -> str:
    """Segment's answer to a test event, in plain words."""
    if result.status_code is None:
        return f"Segment could not be reached: {result.error}."
    try:
        phrase = http.HTTPStatus(result.status_code).phrase
    except ValueError:
        phrase = ""
    body = result.body.strip()
    if len(body) > _FLASH_BODY:
        body = body[:_FLASH_BODY] + "…"
    text = f"Segment answered {result.status_code} {phrase}".rstrip()
    text += f": {body or '(empty body)'}"
    if result.outcome == "unauthorized":
        text += (
            " — the write key was rejected; deliveries are paused until a new"
            " key is saved."
        )
    elif result.outcome == "retry":
        text += " — a temporary error; deliveries are retried automatically."
    return text


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, mask(secret)) if secret else text


# -- reading --------------------------------------------------------------


def _row(state: _State, ws: str) -> t.Any:
    model = state.models.Workspace
    return state.db.session.execute(
        sa.select(model).where(model.workspace_id == ws)
    ).scalar_one_or_none()


def _inbound_key_exists(state: _State, ws: str) -> bool:
    if workspaces.inbound_key_from_config(state, ws):
        return True
    row = _row(state, ws)
    return bool(row is not None and row.inbound_key_hash)


def _seen_surveys(state: _State, ws: str) -> list[str]:
    """Survey ids of the latest deliveries, most recent first (a bounded scan)."""
    table = state.models.Delivery.__table__
    recent = (
        sa.select(table.c.id, table.c.survey_id)
        .where(table.c.workspace_id == ws)
        .order_by(table.c.id.desc())
        .limit(SURVEY_SCAN)
        .subquery()
    )
    query = (
        sa.select(recent.c.survey_id)
        .where(recent.c.survey_id.is_not(None))
        .group_by(recent.c.survey_id)
        .order_by(sa.func.max(recent.c.id).desc())
        .limit(MAX_SEEN_SURVEYS)
    )
    return [str(s) for s in state.db.session.execute(query).scalars()]


def _prepare(
    form: SettingsForm, state: _State, ws: str, current: WorkspaceSettings
) -> None:
    """Per-request parts of the form: choices, config flags, disabled fields."""
    form.allow_private_hosts = state.config.allow_private_hosts
    offered = set(_seen_surveys(state, ws)) | set(current.surveys or ())
    if request.method == "POST":
        offered |= {str(s) for s in form.surveys.data or ()}
    form.offer_surveys(offered)
    if current.api_host_from_config:
        # Not shown and not submitted: the host comes from config.
        del form.region
        del form.custom_api_host


def _fill(form: SettingsForm, current: WorkspaceSettings) -> None:
    form.enabled.data = current.enabled
    if form.region is not None:  # None: the API host comes from config
        form.region.data = current.region
        form.custom_api_host.data = current.custom_api_host or ""
    form.track_event.data = current.track_event
    form.trait_prefix.data = current.trait_prefix
    form.send_all.data = "all" if current.surveys is None else "selected"
    form.surveys.data = sorted(current.surveys or ())


def _deliveries(
    state: _State, ws: str, status: str | None, page: int
) -> list[sa.Row[t.Any]]:
    table = state.models.Delivery.__table__
    columns = [table.c[name] for name in LOG_COLUMNS]
    query = sa.select(*columns).where(table.c.workspace_id == ws)
    if status:
        query = query.where(table.c.status == status)
    query = query.order_by(table.c.id.desc()).limit(PER_PAGE)
    return list(state.db.session.execute(query.offset((page - 1) * PER_PAGE)))


def _secret_hint(state: _State, row: t.Any) -> str | None:
    if row is None or not row.webhook_secret_encrypted:
        return None
    try:
        return mask(state.box.decrypt(row.webhook_secret_encrypted))
    except SecretUnavailable:
        return "set, but it cannot be decrypted (SECRET_KEY changed): set it again"


def _url_or_none(endpoint: str) -> str | None:
    try:
        return url_for(endpoint)
    except BuildError:
        return None


def _refuse(state: _State, ws: str) -> tuple[str, int]:
    """A POST without a valid CSRF token: the page with an error, status 400."""
    return _render(state, ws, notice=_EXPIRED), 400


def _render(
    state: _State,
    ws: str,
    *,
    form: SettingsForm | None = None,
    secret_form: WebhookSecretForm | None = None,
    new_inbound_key: str | None = None,
    notice: str | None = None,
) -> str:
    current = workspaces.load(state, ws, fresh=True)
    if form is None:
        form = SettingsForm(formdata=None)
        _prepare(form, state, ws, current)
        _fill(form, current)
    row = _row(state, ws)
    counts = delivery.counts(state, ws)
    status = request.args.get("status")
    if status not in models.STATUSES:
        status = None
    total = counts[status] if status else sum(counts.values())
    pages = max(1, math.ceil(total / PER_PAGE))
    page = min(max(1, request.args.get("page", 1, type=int) or 1), pages)
    config = state.config
    return render_template(
        "refiner_segment/settings.html",
        form=form,
        secret_form=secret_form or WebhookSecretForm(formdata=None),
        action=ActionForm(),
        settings=current,
        notice=notice,
        counts=counts,
        total=total,
        deliveries=_deliveries(state, ws, status, page),
        page=page,
        pages=pages,
        status=status,
        statuses=models.STATUSES,
        workspace_id=ws,
        is_default_workspace=ws == config.default_workspace,
        segments_url=_url_or_none("refiner_segment_segments.index"),
        inbound_url=request.url_root.rstrip("/")
        + config.url_prefix
        + config.inbound_path,
        inbound_key_from_config=workspaces.inbound_key_from_config(state, ws),
        inbound_key_hint=mask(None, row.inbound_key_hint) if row is not None else "",
        inbound_key_created_at=row.inbound_key_created_at if row is not None else None,
        new_inbound_key=new_inbound_key,
        webhook_secret_hint=_secret_hint(state, row),
        private_hosts_allowed=config.allow_private_hosts,
    )
