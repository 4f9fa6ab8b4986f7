"""The settings page: write key, region, delivery log, inbound key."""

from __future__ import annotations

import functools
import http
import json
import logging
import math
import typing as t

import redis
from flask import Blueprint
from flask import flash
from flask import redirect
from flask import render_template
from flask import request
from flask import url_for
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response as BaseResponse

from .. import workspaces
from ..core.urls import SEGMENT_HOSTS
from ..crypto import SecretUnavailable
from ..crypto import mask
from ..inbound import auth
from ..outbound import kick
from ..outbound import log
from ..outbound import sender
from ..outbound import settings as outbound_settings
from ..state import State
from ..state import get_state
from ..tables import outbound as models
from .backfill import register_backfill
from .backfill import status as backfill_status
from .forms import ActionForm
from .forms import BackfillForm
from .forms import SettingsForm
from .forms import WebhookSecretForm
from .insight import view as insight_view

if t.TYPE_CHECKING:
    from ..outbound.client import SendResult
    from ..outbound.settings import WorkspaceSettings

logger = logging.getLogger("flask_refiner_segment")

#: Deliveries per page of the log.
PER_PAGE = 50
#: How many survey ids seen in deliveries are offered as checkboxes.
MAX_SEEN_SURVEYS = 200
#: ... found among this many latest deliveries.
SURVEY_SCAN = 5000
_FLASH_BODY = 500
_EXPIRED = "The form has expired or its CSRF token is missing: nothing was done."

R = t.TypeVar("R")
Page = str | tuple[str, int] | BaseResponse


def make_blueprint() -> Blueprint:
    """The settings blueprint (the extension protects it with the host's guard)."""
    bp = Blueprint(
        "refiner_segment",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )

    register_backfill(bp, _render, _refuse, _csrf_errors)

    @bp.get("/")
    def settings() -> Page:
        state = get_state()
        return _render(state, state.current_workspace())

    @bp.post("/")
    def save() -> Page:
        state = get_state()
        ws = state.current_workspace()
        current = outbound_settings.load(state, ws, fresh=True)
        form = SettingsForm()
        _prepare(form, state, ws, current)
        if not form.validate():
            return _render(state, ws, form=form), 400
        key_changed = _store(state, ws, form, current)
        kicked = kick.kick(state, ws)  # deliveries that waited go now
        logger.info(
            "Segment settings of workspace %r saved (write key %s).",
            ws,
            "replaced" if key_changed else "unchanged",
        )
        message = "Settings saved."
        if key_changed:
            saved = outbound_settings.load(state, ws, fresh=True)
            message += f" Write key stored: {saved.write_key_masked}."
        if not kicked:
            message += (
                " Redis is unreachable: waiting deliveries go with the next sweep."
            )
        flash(message, "success" if kicked else "warning")
        return redirect(url_for(".settings"))

    @bp.post("/test")
    @_action
    def send_test(state: State, ws: str) -> Page:
        current = outbound_settings.load(state, ws, fresh=True)
        try:
            result = sender.send_test(state, ws)
        except LookupError as exc:
            flash(f"Test event not sent: {exc}", "error")
        else:
            level = "success" if result.outcome == "ok" else "error"
            text = describe_result(result, current.api_host)
            flash(_scrub(text, current.write_key), level)
        return redirect(url_for(".settings"))

    @bp.post("/retry-failed")
    @_action
    def retry_failed(state: State, ws: str) -> Page:
        n = kick.retry_failed(state, ws)
        noun = "delivery" if n == 1 else "deliveries"
        flash(f"{n} failed {noun} queued again.", "success")
        return redirect(url_for(".settings"))

    @bp.post("/rotate-key")
    @_action
    def rotate_key(state: State, ws: str) -> Page:
        if auth.key_from_config(state, ws):
            flash(
                "The inbound API key is set in app config"
                " (REFINER_SEGMENT_INBOUND_API_KEY): change it there.",
                "error",
            )
            return redirect(url_for(".settings"))
        verb = "rotated" if auth.key_exists(state, ws) else "generated"
        key = _rotate(state, ws, verb)
        done = f"Inbound API key {verb}."
        if verb == "rotated":
            done += " The old key no longer works: paste the new one into Segment."
        # Shown once, in this response only: no redirect, no cookie.
        return _render(state, ws, new_inbound_key=key, done=done)

    @bp.post("/webhook-secret")
    def webhook_secret() -> Page:
        state = get_state()
        ws = state.current_workspace()
        secret_form = WebhookSecretForm()
        if not secret_form.validate():
            if _csrf_errors(secret_form):
                return _refuse(state, ws)
            return _render(state, ws, secret_form=secret_form), 400
        if not secret_form.clear.data and not secret_form.secret.data:
            flash("Shared secret unchanged.", "success")
            return redirect(url_for(".settings"))
        value = None if secret_form.clear.data else secret_form.secret.data
        auth.set_shared_secret(state, ws, value)
        logger.info(
            "Webhooks shared secret of workspace %r %s.",
            ws,
            "removed" if value is None else "set",
        )
        flash("Shared secret removed." if value is None else "Shared secret saved.")
        return redirect(url_for(".settings"))

    return bp


# -- saving ---------------------------------------------------------------


def _store(
    state: State, ws: str, form: SettingsForm, current: WorkspaceSettings
) -> bool:
    """Save the validated form; returns whether the write key was replaced."""
    key_changed = bool(form.write_key.data) and current.write_key_source != "config"
    values: dict[str, t.Any] = {
        "enabled": bool(form.enabled.data),
        "track_event": form.track_event.data,
        "trait_prefix": form.trait_prefix.data or "",
        "lifecycle_events": bool(form.lifecycle_events.data),
        "surveys": form.survey_ids(),
    }
    if key_changed:
        values.update(outbound_settings.write_key_values(state, form.write_key.data))
    if not current.api_host_from_config:
        custom = form.region.data == "custom"
        values["region"] = form.region.data
        values["custom_api_host"] = form.custom_api_host.data if custom else None
    workspaces.update(state, ws, values)
    outbound_settings.invalidate(state, ws)
    return key_changed


def _rotate(state: State, ws: str, verb: str) -> str:
    key = auth.rotate_key(state, ws)
    logger.info("Inbound API key of workspace %r %s.", ws, verb)
    return key


def describe_result(result: SendResult, api_host: str) -> str:
    """Segment's answer to a test event, in plain words.

    The body is shown as is from Segment's own hosts only; from a custom data
    plane only when it is JSON, so the button cannot read other services.
    """
    if result.status_code is None:
        return f"Segment could not be reached: {result.error}."
    try:
        phrase = http.HTTPStatus(result.status_code).phrase
    except ValueError:
        phrase = ""
    body = result.body.strip()
    if api_host not in SEGMENT_HOSTS and body and not _is_json(body):
        body = "(body not shown: a custom data plane's answer is shown only as JSON)"
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


def _is_json(text: str) -> bool:
    try:
        return isinstance(json.loads(text), (dict, list))
    except ValueError:
        return False


def _scrub(text: str, secret: str | None) -> str:
    return text.replace(secret, mask(secret)) if secret else text


# -- reading --------------------------------------------------------------


def _seen_surveys(state: State, ws: str) -> list[str]:
    """Survey ids of the latest deliveries, most recent first (a bounded scan)."""
    return log.seen_surveys(state, ws, SURVEY_SCAN, MAX_SEEN_SURVEYS)


def _prepare(
    form: SettingsForm, state: State, ws: str, current: WorkspaceSettings
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
    form.lifecycle_events.data = current.lifecycle_events
    form.send_all.data = "all" if current.surveys is None else "selected"
    form.surveys.data = sorted(current.surveys or ())


def _secret_hint(state: State, row: t.Any) -> str | None:
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


def _csrf_errors(form: t.Any) -> list[str]:
    """The form's CSRF errors (none when the host turned CSRF off)."""
    token = getattr(form, "csrf_token", None)
    return list(token.errors) if token is not None else []


def _action(view: t.Callable[[State, str], Page]) -> t.Callable[[], Page]:
    """A button's view: called with the state and workspace once the CSRF
    token checks out; the page with an error (400) otherwise."""

    @functools.wraps(view)
    def checked() -> Page:
        state = get_state()
        ws = state.current_workspace()
        if not ActionForm().validate():
            return _refuse(state, ws)
        return view(state, ws)

    return checked


def _refuse(state: State, ws: str) -> tuple[str, int]:
    """A POST without a valid CSRF token: the page with an error, status 400."""
    return _render(state, ws, notice=_EXPIRED), 400


def _render(
    state: State,
    ws: str,
    *,
    form: SettingsForm | None = None,
    secret_form: WebhookSecretForm | None = None,
    new_inbound_key: str | None = None,
    notice: str | None = None,
    done: str | None = None,
    backfill_form: BackfillForm | None = None,
) -> str:
    current = outbound_settings.load(state, ws, fresh=True)
    if form is None:
        form = SettingsForm(formdata=None)
        _prepare(form, state, ws, current)
        _fill(form, current)
    row = workspaces.stored(state, ws)
    counts = log.counts(state, ws)
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
        done=done,
        counts=counts,
        total=total,
        deliveries=log.page(state, ws, status, page, PER_PAGE),
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
        inbound_key_from_config=auth.key_from_config(state, ws),
        inbound_key_hint=mask(None, row.inbound_key_hint) if row is not None else "",
        inbound_key_created_at=row.inbound_key_created_at if row is not None else None,
        new_inbound_key=new_inbound_key,
        webhook_secret_hint=_secret_hint(state, row),
        private_hosts_allowed=config.allow_private_hosts,
        shown_event=config.shown_event,
        dismissed_event=config.dismissed_event,
        scheduler_missing=_scheduler_missing(state, counts),
        backfill_form=backfill_form or BackfillForm(formdata=None),
        backfill=backfill_status(state, ws),
        insight=insight_view(state, ws),
        has_completion_source=state.hooks.completion_source is not None,
    )


def _scheduler_missing(state: State, counts: dict[str, int]) -> bool:
    """Deliveries wait (pending or in backoff) and no RQ scheduler runs for the
    queue: retries after a backoff and the sweep then wait for a ``flask
    refiner-segment worker``'s own recovery (plain RQ workers never run them)."""
    if not counts.get(models.PENDING) and not counts.get(models.SENDING):
        return False
    try:
        return not kick.scheduler_active(state.redis, state.queue.name)
    except redis.RedisError:  # the page still renders, without a guess
        logger.warning("Could not check for an RQ scheduler.", exc_info=True)
        return False
