"""Per-app state: what ``init_app`` builds, kept in ``app.extensions``.

The bottom of the package: every module that needs the current app's
configuration, tables or connections calls :func:`get_state`, and none imports
the extension class for it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
import typing as t

import sqlalchemy as sa
from flask import Flask
from flask import current_app

if t.TYPE_CHECKING:
    import redis
    from flask_sqlalchemy import SQLAlchemy
    from rq import Queue

    from .config import Config
    from .crypto import SecretBox
    from .tables import Tables

#: The key of the state in ``app.extensions``.
EXTENSION_KEY = "refiner_segment"

T = t.TypeVar("T")
V = t.TypeVar("V")


@dataclasses.dataclass
class Hooks:
    """The host's callables, registered on the extension object."""

    #: Decides access to the pages; ``None`` denies every request.
    guard: t.Callable[[], bool] | None = None
    #: Names the workspace of the current request; ``None``: the default one.
    workspace_loader: t.Callable[[], str] | None = None
    #: Yields past completions (signal keyword arguments) since a datetime.
    completion_source: t.Callable[..., t.Iterable[t.Mapping[str, t.Any]]] | None = None


class TTLCache(t.Generic[V]):
    """A small per-process cache whose entries expire after ``ttl`` seconds."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, V]] = {}

    def get(self, key: str) -> V | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] <= time.monotonic():
            return None
        return hit[1]

    def put(self, key: str, value: V) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def pop(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()


@dataclasses.dataclass
class State:
    """The extension's state for one app.

    ``owner`` is the extension object that registered it (compared by identity
    only: a signal may reach several extension objects).
    """

    owner: object
    hooks: Hooks
    config: Config
    db: SQLAlchemy
    tables: Tables
    box: SecretBox
    redis: redis.Redis
    queue: Queue
    version: str
    _local: dict[tuple[int, str], t.Any] = dataclasses.field(
        default_factory=dict, repr=False
    )

    def workspace(self, workspace_id: str | None) -> str:
        """``workspace_id``, or the default workspace when it is ``None`` or empty."""
        return str(workspace_id) if workspace_id else self.config.default_workspace

    def current_workspace(self) -> str:
        """The workspace of the current request (the host's loader, or the default)."""
        loader = self.hooks.workspace_loader
        return str(loader()) if loader is not None else self.config.default_workspace

    def is_allowed(self) -> bool:
        """Ask the host's guard; deny when none is registered."""
        guard = self.hooks.guard
        return bool(guard is not None and guard())

    def local(self, key: str, factory: t.Callable[[], T]) -> T:
        """An object of this process built once on first use (a prepared
        statement, a cache). Kept per process id, so a forked worker builds its
        own instead of sharing its parent's connections."""
        slot = (os.getpid(), key)
        try:
            return t.cast(T, self._local[slot])
        except KeyError:
            value = self._local[slot] = factory()
            return value


def get_state() -> State:
    """The extension's state of the current app."""
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
    return t.cast(State, state)


def job_app() -> Flask:
    """The current app, for a job (or a thread of one) to push a context of
    its own; a clear error outside the app context."""
    try:
        return t.cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    except RuntimeError:
        raise RuntimeError(
            "flask-refiner-segment jobs need the Flask app context: run the worker"
            " with `flask refiner-segment worker`."
        ) from None


@functools.lru_cache(maxsize=32)
def autocommit(engine: sa.Engine) -> sa.Engine:
    """``engine`` in autocommit: one round trip per statement, no ``BEGIN``
    and ``ROLLBACK`` around it. Built once per engine: building it takes
    longer than the statement it runs."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")
