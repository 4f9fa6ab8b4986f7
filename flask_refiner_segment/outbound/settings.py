"""Per-workspace settings of the Segment source: the effective values (stored,
overridden by app config), cached per process, and every change to them.

Changes run in the extension's own transactions, never on the host's
``db.session``.
"""

from __future__ import annotations

import dataclasses
import time
import typing as t

from .. import workspaces
from ..core.urls import check_data_plane_url
from ..core.urls import resolve_api_host
from ..crypto import SecretUnavailable
from ..crypto import hint
from ..crypto import mask
from ..state import TTLCache
from ..tables.base import utcnow

if t.TYPE_CHECKING:
    from ..state import State


@dataclasses.dataclass(frozen=True)
class WorkspaceSettings:
    """What the pipeline and the settings page need to know about a workspace."""

    workspace_id: str
    enabled: bool
    write_key: str | None = dataclasses.field(repr=False)
    #: ``"config"``, ``"stored"`` or ``None`` when there is no key.
    write_key_source: str | None
    write_key_masked: str
    region: str
    custom_api_host: str | None
    api_host: str
    api_host_from_config: bool
    track_event: str
    trait_prefix: str
    surveys: frozenset[str] | None
    #: The current key was answered 401/403: deliveries wait.
    paused: bool
    attention_reason: str | None
    #: A problem reading the stored settings (e.g. the key cannot be decrypted).
    error: str | None
    #: Why the stored custom data-plane URL may not be used (the URL policy,
    #: e.g. after ``ALLOW_PRIVATE_HOSTS`` was turned off); nothing is sent then.
    host_error: str | None = None
    #: Survey Shown / Survey Dismissed tracks are sent (off by default).
    lifecycle_events: bool = False

    @property
    def sendable(self) -> bool:
        """Whether new completions are queued for Segment."""
        return self.enabled and bool(self.write_key) and not self.host_error

    def skip_reason(self, survey_id: str | None) -> str | None:
        """Why a completion of this survey is not queued, or ``None``."""
        if not self.enabled:
            return "integration disabled"
        if not self.write_key:
            return self.error or "no Segment write key configured"
        if self.host_error:
            return self.host_error
        if self.surveys is not None and survey_id not in self.surveys:
            return f"survey {survey_id!r} is not selected to send"
        return None


def _cache(state: State) -> TTLCache[WorkspaceSettings]:
    return state.local(
        "settings", lambda: TTLCache(state.config.settings_cache_seconds)
    )


#: Up to this many stored workspaces, a process reads them all in one query
#: (once per ``SETTINGS_CACHE_SECONDS``) instead of one query per workspace.
SNAPSHOT_MAX = 20_000


class _Snapshot:
    """Every stored workspace row, read at once; ``rows`` is ``None`` when
    there were more than :data:`SNAPSHOT_MAX` (or none read yet)."""

    def __init__(self) -> None:
        self.rows: dict[str, t.Any] | None = None
        self.expires = 0.0


def load(state: State, workspace_id: str, *, fresh: bool = False) -> WorkspaceSettings:
    """Effective settings, cached ``SETTINGS_CACHE_SECONDS`` unless ``fresh``.

    A miss is served from the process's snapshot of every stored workspace
    (one query per ``SETTINGS_CACHE_SECONDS``, however many workspaces send)
    when the snapshot says the workspace can send; a workspace missing from it
    or that cannot send is read on its own, so that a key saved since the
    snapshot is seen at once.
    """
    cache = _cache(state)
    if not fresh:
        cached = cache.get(workspace_id)
        if cached is not None:
            return cached
        row = _snapshot_row(state, workspace_id)
        if row is not None:
            found = _derived(state, workspace_id, row)
            if found.sendable:  # not cached again: it lives as long as the snapshot
                return found
    found = _effective(state, workspace_id, workspaces.stored(state, workspace_id))
    cache.put(workspace_id, found)
    return found


def _snapshot_row(state: State, workspace_id: str) -> t.Any:
    """The workspace's row in the snapshot (read again once it expired), or
    ``None``."""
    ttl = state.config.settings_cache_seconds
    if ttl <= 0:
        return None
    snapshot = state.local("settings_snapshot", _Snapshot)
    now = time.monotonic()
    if snapshot.expires <= now:
        snapshot.rows = workspaces.stored_all(state, SNAPSHOT_MAX)
        snapshot.expires = now + ttl
    return None if snapshot.rows is None else snapshot.rows.get(workspace_id)


def load_many(
    state: State, workspace_ids: t.Sequence[str]
) -> dict[str, WorkspaceSettings]:
    """Current effective settings of several workspaces, in one query.

    Always read from the database (a serve job runs longer than a request).
    """
    rows = workspaces.stored_many(state, workspace_ids)
    return {ws: _derived(state, ws, rows.get(ws)) for ws in workspace_ids}


def _derived(state: State, workspace_id: str, row: t.Any) -> WorkspaceSettings:
    """:func:`_effective`, kept per process and reused while the row's
    ``updated_at`` is unchanged (decrypting the write key, checking the host)."""
    derived: dict[str, tuple[t.Any, WorkspaceSettings]] = state.local(
        "settings_derived", dict
    )
    if len(derived) > SNAPSHOT_MAX:
        derived.clear()
    stamp = None if row is None else (row.updated_at, row.id)
    hit = derived.get(workspace_id)
    if hit is None or hit[0] != stamp:
        hit = derived[workspace_id] = (stamp, _effective(state, workspace_id, row))
    return hit[1]


def invalidate(state: State, workspace_id: str | None = None) -> None:
    """Forget cached settings after a change."""
    snapshot = state.local("settings_snapshot", _Snapshot)
    if workspace_id is None:
        _cache(state).clear()
        snapshot.expires = 0.0
    else:
        _cache(state).pop(workspace_id)
        if snapshot.rows is not None:
            snapshot.rows.pop(workspace_id, None)


def _effective(state: State, workspace_id: str, row: t.Any) -> WorkspaceSettings:
    config = state.config
    is_default = workspace_id == config.default_workspace
    error = None
    write_key: str | None = None
    source: str | None = None
    key_hint: str | None = None
    if is_default and config.write_key:
        write_key, source = config.write_key, "config"
    elif row is not None and row.write_key_encrypted:
        try:
            write_key = state.box.decrypt(row.write_key_encrypted)
            source = "stored"
        except SecretUnavailable as exc:
            error = str(exc)
            key_hint = row.write_key_hint
    region = row.region if row is not None else "us"
    custom = row.custom_api_host if row is not None else None
    from_config = bool(is_default and config.api_host)
    host_error = None
    if from_config:
        api_host = str(config.api_host).rstrip("/")
    else:
        try:
            api_host = resolve_api_host(region, custom)
        except ValueError as exc:
            # Never fall back to another data plane than the one chosen.
            api_host, error = resolve_api_host("us"), str(exc)
            host_error = error
    if not host_error and not from_config and region == "custom":
        refused = check_data_plane_url(
            custom or "", allow_private=config.allow_private_hosts
        )
        if refused:
            host_error = f"the custom data-plane URL is refused: {refused}"
    paused = bool(
        write_key
        and row is not None
        and row.rejected_key_fingerprint
        and row.rejected_key_fingerprint == state.box.fingerprint(write_key)
    )
    surveys = row.surveys if row is not None else None
    return WorkspaceSettings(
        workspace_id=workspace_id,
        enabled=row.enabled if row is not None else True,
        write_key=write_key,
        write_key_source=source,
        write_key_masked=mask(write_key, key_hint),
        region=region,
        custom_api_host=custom,
        api_host=api_host,
        api_host_from_config=from_config,
        track_event=(row.track_event if row is not None else None)
        or config.track_event,
        trait_prefix=(
            row.trait_prefix
            if row is not None and row.trait_prefix is not None
            else config.trait_prefix
        ),
        surveys=frozenset(surveys) if surveys is not None else None,
        lifecycle_events=bool(row is not None and row.lifecycle_events),
        paused=paused,
        attention_reason=row.attention_reason if paused and row is not None else None,
        error=error,
        host_error=host_error,
    )


def write_key_values(state: State, write_key: str) -> dict[str, t.Any]:
    """The columns that store a new write key encrypted; a new key lifts a
    401/403 pause."""
    return {
        "write_key_encrypted": state.box.encrypt(write_key),
        "write_key_hint": hint(write_key),
        "rejected_key_fingerprint": None,
        "attention_reason": None,
        "attention_at": None,
    }


def save(
    state: State,
    workspace_id: str,
    *,
    write_key: str | None = None,
    region: str | None = None,
    custom_api_host: str | None = None,
) -> WorkspaceSettings:
    """Store a write key and/or region, checked as the settings form checks
    them; :exc:`ValueError` says why a value is refused."""
    values: dict[str, t.Any] = {}
    if region is not None:
        resolve_api_host(region, custom_api_host)  # ValueError: unknown region
        if region == "custom":
            refused = check_data_plane_url(
                (custom_api_host or "").strip(),
                allow_private=state.config.allow_private_hosts,
            )
            if refused:
                raise ValueError(refused)
        values["region"] = region
        values["custom_api_host"] = (
            (custom_api_host or "").strip() if region == "custom" else None
        )
    if write_key is not None:
        if not write_key.strip():
            raise ValueError("The write key must not be empty.")
        values.update(write_key_values(state, write_key.strip()))
    if values:
        workspaces.update(state, workspace_id, values)
        invalidate(state, workspace_id)
    return load(state, workspace_id, fresh=True)


def mark_rejected(state: State, workspace_id: str, write_key: str, reason: str) -> None:
    """Pause deliveries of a workspace whose current write key Segment rejected."""
    workspaces.update(
        state,
        workspace_id,
        {
            "rejected_key_fingerprint": state.box.fingerprint(write_key),
            "attention_reason": reason,
            "attention_at": utcnow(),
        },
    )
    invalidate(state, workspace_id)


def clear_rejected(state: State, workspace_id: str) -> None:
    """Lift a pause, e.g. after a test event was accepted."""
    workspaces.update(
        state,
        workspace_id,
        {
            "rejected_key_fingerprint": None,
            "attention_reason": None,
            "attention_at": None,
        },
    )
    invalidate(state, workspace_id)
