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

from . import tables
from .cli import cli
from .config import library_version
from .config import read_config
from .crypto import make_box
from .deprecation import alias
from .inbound import auth
from .inbound import queries
from .inbound.views import make_inbound_blueprint
from .outbound import kick
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

    from .inbound.queries import Account
    from .inbound.queries import Event
    from .inbound.queries import Profile
    from .inbound.queries import View
    from .outbound.client import SendResult
    from .outbound.settings import WorkspaceSettings
    from .segments.service import Rules
    from .segments.service import SavedSegment
    from .segments.service import SegmentRef

GuardT = t.TypeVar("GuardT", bound=t.Callable[[], bool])
LoaderT = t.TypeVar("LoaderT", bound=t.Callable[[], str])


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
        self.tables = tables.define(db)
        self.signal = (
            signal if signal is not None else blinker.signal("survey_completed")
        )
        self._hooks = Hooks()
        # A bound method of this long-lived object: blinker's weak ref stays alive.
        self.signal.connect(self._on_survey_completed)
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

    # -- inbound ------------------------------------------------------------

    def rotate_inbound_key(self, workspace_id: str | None = None) -> str:
        """Generate a new inbound API key and return it (it is shown only once).

        :raise ValueError: the key is set in ``REFINER_SEGMENT_INBOUND_API_KEY``.
        """
        state = get_state()
        return auth.rotate_key(state, state.workspace(workspace_id))

    def get_profile(
        self, user_id: str, workspace_id: str | None = None, *, events_limit: int = 20
    ) -> Profile | None:
        """What Segment sent about a user: traits, accounts, recent events."""
        return queries.get_profile(user_id, workspace_id, events_limit=events_limit)

    def get_account(
        self, group_id: str, workspace_id: str | None = None
    ) -> Account | None:
        """An account (Segment group): its traits and user ids."""
        return queries.get_account(group_id, workspace_id)

    def recent_events(
        self, user_id: str, limit: int = 50, workspace_id: str | None = None
    ) -> list[Event]:
        """A user's latest tracked events from Segment, newest first."""
        return queries.recent_events(user_id, limit, workspace_id)

    def recent_views(
        self, user_id: str, limit: int = 50, workspace_id: str | None = None
    ) -> list[View]:
        """A user's latest page/screen views from Segment, newest first."""
        return queries.recent_views(user_id, limit, workspace_id)

    def prune_events(self, older_than_days: int | None = None) -> dict[str, int]:
        """Delete inbound events and views older than the retention."""
        return queries.prune(older_than_days)

    # -- segments -----------------------------------------------------------

    def is_member(
        self, user_id: str, segment: SegmentRef, workspace_id: str | None = None
    ) -> bool:
        """Whether a user is in a segment (a saved segment, its id or a rules dict)."""
        return segments.is_member(user_id, segment, workspace_id)

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

    def create_segment(
        self, name: str, rules: Rules, workspace_id: str | None = None
    ) -> SavedSegment:
        """Validate and save a named segment (raises ``SegmentRuleError``)."""
        return segments.create_segment(name, rules, workspace_id)

    def get_segment(
        self, segment_id: int, workspace_id: str | None = None
    ) -> SavedSegment | None:
        """A saved segment by id, or ``None``."""
        return segments.get_segment(segment_id, workspace_id)

    def get_segment_by_name(
        self, name: str, workspace_id: str | None = None
    ) -> SavedSegment | None:
        """A saved segment by its name, or ``None``."""
        return segments.get_segment_by_name(name, workspace_id)

    def list_segments(self, workspace_id: str | None = None) -> list[SavedSegment]:
        """The workspace's saved segments, by name."""
        return segments.list_segments(workspace_id)

    def update_segment(
        self,
        segment_id: int,
        *,
        name: str | None = None,
        rules: Rules | None = None,
        workspace_id: str | None = None,
    ) -> SavedSegment:
        """Change a segment's name and/or rules."""
        return segments.update_segment(
            segment_id, name=name, rules=rules, workspace_id=workspace_id
        )

    def delete_segment(self, segment_id: int, workspace_id: str | None = None) -> bool:
        """Delete a saved segment; ``False`` when there was none."""
        return segments.delete_segment(segment_id, workspace_id)

    # -- deprecated ---------------------------------------------------------

    @property
    def profile(self) -> t.Callable[..., Profile | None]:
        """Deprecated: :meth:`get_profile`."""
        return alias(self.get_profile, "RefinerSegment.profile", "get_profile")

    # -- the receiver -------------------------------------------------------

    def _on_survey_completed(self, sender: t.Any, **kwargs: t.Any) -> None:
        try:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
        except RuntimeError:
            receiver.logger.error(
                "survey_completed was sent outside an app context; ignored."
            )
            return
        state = app.extensions.get(EXTENSION_KEY)
        if state is not None and state.owner is self:
            receiver.receive(state, kwargs)
