"""The extension object."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import typing as t

import blinker
import redis
from flask import Flask
from flask import current_app

from . import queue as _queue
from .config import Config
from .config import read_config
from .crypto import SecretBox
from .crypto import make_box
from .models import Models
from .models import make_models
from .segments.models import make_segment_models

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy
    from rq import Queue

    from .workspaces import WorkspaceSettings

GuardT = t.TypeVar("GuardT", bound=t.Callable[[], bool])
LoaderT = t.TypeVar("LoaderT", bound=t.Callable[[], str])

EXTENSION_KEY = "refiner_segment"


@dataclasses.dataclass
class _State:
    """Per-app state, kept in ``app.extensions["refiner_segment"]``.

    :meta private:
    """

    ext: RefinerSegment
    config: Config
    db: SQLAlchemy
    models: Models
    box: SecretBox
    redis: redis.Redis
    queue: Queue
    redis_url: str
    version: str
    settings_cache: dict[str, tuple[float, WorkspaceSettings]] = dataclasses.field(
        default_factory=dict
    )
    converted_types: set[str] = dataclasses.field(default_factory=set)
    #: Objects built once per app on first use (e.g. prepared statements).
    cache: dict[str, t.Any] = dataclasses.field(default_factory=dict)


class RefinerSegment:
    """Deliver completed survey responses to Segment, and receive Segment data.

    :param app: call :meth:`init_app` on this app right away.
    :param db: the host's Flask-SQLAlchemy instance; the extension's tables are
        defined on its metadata (create them with the host's ``create_all`` or
        migrations).
    :param signal: the host's ``survey_completed`` signal; defaults to blinker's
        default-namespace ``signal("survey_completed")``.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy,
        signal: blinker.Signal | None = None,
    ) -> None:
        self.db = db
        self.models = make_models(db)
        self.inbound = _make_inbound_models(db)
        self.segment_models = make_segment_models(db)
        self.signal = (
            signal if signal is not None else blinker.signal("survey_completed")
        )
        self._guard: t.Callable[[], bool] | None = None
        self._workspace_loader: t.Callable[[], str] | None = None
        # A bound method of this long-lived object: blinker's weak ref stays alive.
        self.signal.connect(self._on_survey_completed)
        if app is not None:
            self.init_app(app)

    @property
    def Workspace(self) -> t.Any:  # noqa: N802
        """The model of stored workspace settings."""
        return self.models.Workspace

    @property
    def Delivery(self) -> t.Any:  # noqa: N802
        """The model of deliveries (one per completed response)."""
        return self.models.Delivery

    def init_app(
        self, app: Flask, *, redis_connection: redis.Redis | None = None
    ) -> None:
        """Register the extension on ``app``.

        :param redis_connection: a Redis connection the host already uses for RQ;
            by default one is made from ``REFINER_SEGMENT_REDIS_URL``.
        """
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                "A 'RefinerSegment' instance has already been registered on this"
                " Flask app. Import and use that instance instead."
            )
        config = read_config(app)
        connection = redis_connection or _queue.connect(
            config.redis_url, config.redis_socket_timeout
        )
        state = _State(
            ext=self,
            config=config,
            db=self.db,
            models=self.models,
            box=make_box(config.encryption_key, config.secret_key),
            redis=connection,
            queue=None,  # type: ignore[arg-type]
            redis_url=config.redis_url,
            version=_library_version(),
        )
        state.queue = _queue.make_queue(state)
        app.extensions[EXTENSION_KEY] = state

        from .cli import cli

        app.cli.add_command(cli)
        self._register_blueprints(app, state)

    def _register_blueprints(self, app: Flask, state: _State) -> None:
        """Register the web parts that are installed (settings page, inbound route)."""
        try:
            from .views import make_blueprint
        except ImportError:
            pass
        else:
            app.register_blueprint(
                make_blueprint(self), url_prefix=state.config.url_prefix
            )
        try:
            from .inbound.views import make_inbound_blueprint
        except ImportError:
            pass
        else:
            bp = make_inbound_blueprint(self)
            app.register_blueprint(bp, url_prefix=state.config.url_prefix)
            csrf = app.extensions.get("csrf")
            if csrf is not None:
                csrf.exempt(bp)
        from .segments.views import make_segments_blueprint

        app.register_blueprint(
            make_segments_blueprint(self),
            url_prefix=state.config.url_prefix + "/segments",
        )

    # -- host hooks ---------------------------------------------------------

    def settings_guard(self, func: GuardT) -> GuardT:
        """Register the callable that decides access to the settings pages.

        It takes no arguments and returns ``True`` to allow the request. Without
        a registered guard every request to the pages is denied with 403.
        """
        self._guard = func
        return func

    def workspace_loader(self, func: LoaderT) -> LoaderT:
        """Register the callable naming the workspace the settings pages edit."""
        self._workspace_loader = func
        return func

    def current_workspace(self) -> str:
        """The workspace of the current request (the host's loader, or the default)."""
        if self._workspace_loader is not None:
            return str(self._workspace_loader())
        return _get_state().config.default_workspace

    def is_allowed(self) -> bool:
        """Ask the host's guard; deny when none is registered."""
        return bool(self._guard is not None and self._guard())

    # -- public API ---------------------------------------------------------

    def settings(self, workspace_id: str | None = None) -> WorkspaceSettings:
        """The effective settings of a workspace (fresh from the database)."""
        from . import workspaces

        state = _get_state()
        return workspaces.load(
            state, workspace_id or state.config.default_workspace, fresh=True
        )

    def status_counts(self, workspace_id: str | None = None) -> dict[str, int]:
        """Number of deliveries per status."""
        from . import delivery

        return delivery.counts(_get_state(), workspace_id)

    def requeue(self, *, force: bool = False) -> dict[str, int]:
        """Re-enqueue deliveries whose job was lost; see :func:`delivery.requeue`."""
        from . import delivery

        return delivery.requeue(_get_state(), force=force)

    def retry_failed(self, workspace_id: str | None = None) -> int:
        """Put failed deliveries back in the queue; returns how many."""
        from . import delivery

        return delivery.retry_failed(_get_state(), workspace_id)

    def send_test(self, workspace_id: str | None = None) -> t.Any:
        """Send a test ``track`` synchronously and return Segment's answer."""
        from . import delivery

        return delivery.send_test(_get_state(), workspace_id)

    def profile(
        self, user_id: str, workspace_id: str | None = None
    ) -> dict[str, t.Any] | None:
        """What Segment sent about a user: traits, accounts, recent events."""
        from .inbound import api

        return api.get_profile(user_id, workspace_id)

    def recent_events(
        self, user_id: str, limit: int = 50, workspace_id: str | None = None
    ) -> list[dict[str, t.Any]]:
        """A user's latest tracked events from Segment, newest first."""
        from .inbound import api

        return api.recent_events(user_id, limit, workspace_id)

    def is_member(
        self, user_id: str, segment: t.Any, workspace_id: str | None = None
    ) -> bool:
        """Whether a user is in a segment (a saved segment, its id or a rules dict)."""
        from .segments import api

        return api.is_member(user_id, segment, workspace_id)

    def segment_count(self, segment: t.Any, workspace_id: str | None = None) -> int:
        """Number of users in a segment, counted in SQL."""
        from .segments import api

        return api.count(segment, workspace_id)

    def segment_members(
        self,
        segment: t.Any,
        page: int = 1,
        per_page: int = 50,
        workspace_id: str | None = None,
    ) -> list[str]:
        """One page of a segment's user ids."""
        from .segments import api

        return api.members(segment, page, per_page, workspace_id)

    def create_segment(
        self, name: str, rules: dict[str, t.Any], workspace_id: str | None = None
    ) -> t.Any:
        """Validate and save a named segment (raises ``SegmentRuleError``)."""
        from .segments import api

        return api.create_segment(name, rules, workspace_id)

    def get_segment_by_name(
        self, name: str, workspace_id: str | None = None
    ) -> t.Any | None:
        """A saved segment by its name, or ``None``."""
        from .segments import api

        return next(
            (s for s in api.list_segments(workspace_id) if s.name == name), None
        )

    # -- the receiver -------------------------------------------------------

    def _on_survey_completed(self, sender: t.Any, **kwargs: t.Any) -> None:
        from .receiver import receive

        receive(self, kwargs)


def _get_state() -> _State:
    """The state of the current app.

    :meta private:
    """
    try:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
    except RuntimeError:
        raise RuntimeError(
            "Working outside of application context: flask-refiner-segment needs"
            " an app context (run jobs with `flask refiner-segment worker`)."
        ) from None
    state = app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise RuntimeError(
            "The current Flask app is not registered with this 'RefinerSegment'"
            " instance. Did you forget to call 'init_app'?"
        )
    return t.cast(_State, state)


def _library_version() -> str:
    try:
        return importlib.metadata.version("flask-refiner-segment")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def _make_inbound_models(db: SQLAlchemy) -> t.Any:
    try:
        from .inbound.models import make_inbound_models
    except ImportError:
        return None
    return make_inbound_models(db)
