"""The extension object: ``init_app``, the host's hooks, and the public API.

The top of the package: only ``__init__`` imports this module. Its methods are
thin; each calls the module that does the work.
"""

from __future__ import annotations

import typing as t

import blinker
import redis
import sqlalchemy as sa
from flask import Flask
from flask import current_app

from . import erasure
from . import tables
from .cli import cli
from .config import library_version
from .config import read_config
from .crypto import make_box
from .deprecation import warn
from .inbound import auth
from .inbound import queries
from .inbound.views import make_inbound_blueprint
from .outbound import hosttx
from .outbound import kick
from .outbound import lifecycle
from .outbound import log
from .outbound import receiver
from .outbound import sender
from .outbound import settings as outbound_settings
from .segments import service as segments
from .segments.views import make_segments_blueprint
from .state import EXTENSION_KEY
from .state import Hooks
from .state import State
from .state import get_state
from .web.pages import protect
from .web.settings import make_blueprint

if t.TYPE_CHECKING:
    from flask_sqlalchemy import SQLAlchemy

    from .inbound.queries import Profile
    from .outbound.client import SendResult
    from .outbound.settings import WorkspaceSettings
    from .segments.service import Rules
    from .segments.service import SegmentRef

GuardT = t.TypeVar("GuardT", bound=t.Callable[[], bool])
SourceT = t.TypeVar("SourceT", bound=t.Callable[..., t.Iterable[t.Mapping[str, t.Any]]])
LoaderT = t.TypeVar("LoaderT", bound=t.Callable[[], str])


class RefinerSegment:
    """Deliver completed survey responses to Segment, and receive Segment data.

    :param app: call :meth:`init_app` on this app right away.
    :param db: the host's Flask-SQLAlchemy instance; the extension's tables are
        defined on its metadata (create them with the host's ``create_all`` or
        migrations).
    :param signal: the host's ``survey_completed`` signal; defaults to blinker's
        default-namespace ``signal("survey_completed")``.
    :param shown_signal: the host's ``survey_shown`` signal (default: blinker's
        default-namespace ``signal("survey_shown")``).
    :param dismissed_signal: the host's ``survey_dismissed`` signal (default:
        ``signal("survey_dismissed")``).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        db: SQLAlchemy,
        signal: blinker.Signal | None = None,
        shown_signal: blinker.Signal | None = None,
        dismissed_signal: blinker.Signal | None = None,
    ) -> None:
        self.db = db
        self.tables = tables.define(db)
        self.signal = (
            signal if signal is not None else blinker.signal("survey_completed")
        )
        self.shown_signal = shown_signal or blinker.signal(lifecycle.SHOWN)
        self.dismissed_signal = dismissed_signal or blinker.signal(lifecycle.DISMISSED)
        self._hooks = Hooks()
        # A bound method of this long-lived object: blinker's weak ref stays alive.
        self.signal.connect(self._on_survey_completed)
        self.shown_signal.connect(self._on_survey_shown)
        self.dismissed_signal.connect(self._on_survey_dismissed)
        if app is not None:
            self.init_app(app)

    @property
    def Workspace(self) -> t.Any:  # noqa: N802
        """The model of stored workspace settings."""
        return self.tables.outbound.Workspace

    @property
    def Delivery(self) -> t.Any:  # noqa: N802
        """The model of deliveries (one per completed response)."""
        return self.tables.outbound.Delivery

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
        connection = redis_connection or kick.connect(
            config.redis_url, config.redis_socket_timeout
        )
        app.extensions[EXTENSION_KEY] = State(
            owner=self,
            hooks=self._hooks,
            config=config,
            db=self.db,
            tables=self.tables,
            box=make_box(config.encryption_key, config.secret_key),
            redis=connection,
            queue=kick.make_queue(config, connection),
            version=library_version(),
        )
        # Once per session factory: the signal joins the host's transaction.
        hosttx.install(self.db.session)
        app.cli.add_command(cli)
        prefix = config.url_prefix
        app.register_blueprint(protect(make_blueprint()), url_prefix=prefix)
        app.register_blueprint(
            protect(make_segments_blueprint()), url_prefix=prefix + "/segments"
        )
        inbound = make_inbound_blueprint()
        app.register_blueprint(inbound, url_prefix=prefix)
        csrf = app.extensions.get("csrf")
        if csrf is not None:
            csrf.exempt(inbound)

    # -- host hooks ---------------------------------------------------------

    def settings_guard(self, func: GuardT) -> GuardT:
        """Register the callable that decides access to the settings pages.

        It takes no arguments and returns ``True`` to allow the request. Without
        a registered guard every request to the pages is denied with 403.
        """
        self._hooks.guard = func
        return func

    def workspace_loader(self, func: LoaderT) -> LoaderT:
        """Register the callable naming the workspace the settings pages edit."""
        self._hooks.workspace_loader = func
        return func

    def completion_source(self, func: SourceT) -> SourceT:
        """Register where past completions come from, for backfills.

        ``func(since)`` gets an aware UTC ``datetime`` and yields the keyword
        arguments of ``survey_completed`` for each completion since then, best
        oldest first (a backfill then resumes where it stopped). It may also
        take ``workspace_id`` and ``survey_id`` keyword arguments to filter.
        """
        self._hooks.completion_source = func
        return func

    def current_workspace(self) -> str:
        """The workspace of the current request (the host's loader, or the default)."""
        return get_state().current_workspace()

    def is_allowed(self) -> bool:
        """Ask the host's guard; deny when none is registered."""
        return get_state().is_allowed()

    # -- outbound -----------------------------------------------------------

    def settings(self, workspace_id: str | None = None) -> WorkspaceSettings:
        """The effective settings of a workspace (fresh from the database)."""
        state = get_state()
        return outbound_settings.load(state, state.workspace(workspace_id), fresh=True)

    def save_settings(
        self,
        workspace_id: str | None = None,
        *,
        write_key: str | None = None,
        region: str | None = None,
        custom_api_host: str | None = None,
    ) -> WorkspaceSettings:
        """Store a workspace's write key and/or region as the settings page
        does (``None`` keeps a value); returns the new effective settings.

        :raise ValueError: an unknown region, or a custom data-plane URL that
            the page would refuse (see ``REFINER_SEGMENT_ALLOW_PRIVATE_HOSTS``).
        """
        state = get_state()
        return outbound_settings.save(
            state,
            state.workspace(workspace_id),
            write_key=write_key,
            region=region,
            custom_api_host=custom_api_host,
        )

    def status_counts(self, workspace_id: str | None = None) -> dict[str, int]:
        """Number of deliveries per status (every status, zeros included)."""
        return log.counts(get_state(), workspace_id)

    def requeue(self, *, force: bool = False) -> dict[str, int]:
        """Re-enqueue deliveries whose job was lost: ``{"released", "workspaces"}``."""
        return kick.requeue(get_state(), force=force)

    def retry_failed(self, workspace_id: str | None = None) -> int:
        """Put failed deliveries back in the queue; returns how many."""
        return kick.retry_failed(get_state(), workspace_id)

    def send_test(self, workspace_id: str | None = None) -> SendResult:
        """Send a test ``track`` synchronously and return Segment's answer.

        :raise LookupError: the workspace has no write key.
        """
        return sender.send_test(get_state(), workspace_id)

    def forget_user(
        self, user_id: str, workspace_id: str | None = None
    ) -> dict[str, int]:
        """Erase what the extension holds about a user (README: Erasure).

        Answers and traits leave the user's deliveries (their ids and statuses
        stay for the log), deliveries not sent yet are never sent, recorded
        answers and inbound traits, events, views and links are deleted.
        Returns the counts per part.

        :raise ValueError: ``user_id`` is empty.
        """
        state = get_state()
        return erasure.forget_user(state, user_id, state.workspace(workspace_id))

    # -- inbound (the functions' own docs: flask_refiner_segment.inbound.queries) --

    def rotate_inbound_key(self, workspace_id: str | None = None) -> str:
        """Generate a new inbound API key and return it (it is shown only once).

        :raise ValueError: the key is set in ``REFINER_SEGMENT_INBOUND_API_KEY``.
        """
        state = get_state()
        return auth.rotate_key(state, state.workspace(workspace_id))

    get_profile = staticmethod(queries.get_profile)
    get_account = staticmethod(queries.get_account)
    recent_events = staticmethod(queries.recent_events)
    recent_views = staticmethod(queries.recent_views)

    def prune_events(self, older_than_days: int | None = None) -> dict[str, int]:
        """Delete inbound events and views older than the retention."""
        return queries.prune(older_than_days)

    # -- segments (the functions' own docs: flask_refiner_segment.segments.service)

    is_member = staticmethod(segments.is_member)

    def segment_count(
        self, segment: SegmentRef, workspace_id: str | None = None
    ) -> int:
        """Number of users in a segment, counted in SQL."""
        return segments.count(segment, workspace_id)

    def segment_members(
        self,
        segment: SegmentRef,
        page: int = 1,
        per_page: int = 50,
        workspace_id: str | None = None,
    ) -> list[str]:
        """One page of a segment's user ids, ordered by user id."""
        return segments.members(segment, page, per_page, workspace_id)

    def segment_query(
        self, rules: Rules, workspace_id: str | None = None
    ) -> sa.Select[t.Any]:
        """The ``SELECT`` of member user ids, to join with the host's tables."""
        return segments.members_query(workspace_id, rules)

    create_segment = staticmethod(segments.create_segment)
    get_segment = staticmethod(segments.get_segment)
    get_segment_by_name = staticmethod(segments.get_segment_by_name)
    list_segments = staticmethod(segments.list_segments)
    update_segment = staticmethod(segments.update_segment)
    delete_segment = staticmethod(segments.delete_segment)

    # -- deprecated ---------------------------------------------------------

    @property
    def profile(self) -> t.Callable[..., Profile | None]:
        """Deprecated: :meth:`get_profile`."""
        warn("RefinerSegment.profile", "RefinerSegment.get_profile")
        return self.get_profile

    # -- the receiver -------------------------------------------------------

    def _on_survey_completed(self, sender: t.Any, **kwargs: t.Any) -> None:
        state = self._signal_state("survey_completed")
        if state is not None:
            receiver.receive(state, kwargs)

    def _on_survey_shown(self, sender: t.Any, **kwargs: t.Any) -> None:
        state = self._signal_state(lifecycle.SHOWN)
        if state is not None:
            lifecycle.receive(state, lifecycle.SHOWN, kwargs)

    def _on_survey_dismissed(self, sender: t.Any, **kwargs: t.Any) -> None:
        state = self._signal_state(lifecycle.DISMISSED)
        if state is not None:
            lifecycle.receive(state, lifecycle.DISMISSED, kwargs)

    def _signal_state(self, name: str) -> State | None:
        """The state of the current app when this instance registered it."""
        try:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        except RuntimeError:
            receiver.logger.error("%s was sent outside an app context; ignored.", name)
            return None
        state = app.extensions.get(EXTENSION_KEY)
        if state is not None and state.owner is self:
            return t.cast(State, state)
        return None
