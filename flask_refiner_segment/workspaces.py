"""Effective per-workspace settings: stored values, overridden by app config."""

from __future__ import annotations

import dataclasses
import time
import typing as t

import sqlalchemy as sa

from .client import resolve_api_host
from .crypto import SecretUnavailable
from .crypto import hint
from .crypto import mask
from .models import utcnow

if t.TYPE_CHECKING:
    from .extension import _State


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

    @property
    def sendable(self) -> bool:
        """Whether new completions are queued for Segment."""
        return self.enabled and bool(self.write_key)

    def skip_reason(self, survey_id: str | None) -> str | None:
        """Why a completion of this survey is not queued, or ``None``."""
        if not self.enabled:
            return "integration disabled"
        if not self.write_key:
            return self.error or "no Segment write key configured"
        if self.surveys is not None and survey_id not in self.surveys:
            return f"survey {survey_id!r} is not selected to send"
        return None


def load(state: _State, workspace_id: str, *, fresh: bool = False) -> WorkspaceSettings:
    """Effective settings, cached ``SETTINGS_CACHE_SECONDS`` unless ``fresh``."""
    now = time.monotonic()
    cached = state.settings_cache.get(workspace_id)
    if not fresh and cached is not None and cached[0] > now:
        return cached[1]
    table = state.models.Workspace.__table__
    with state.db.engine.connect() as conn:
        row = conn.execute(
            sa.select(table).where(table.c.workspace_id == workspace_id)
        ).first()
    settings = _effective(state, workspace_id, row)
    state.settings_cache[workspace_id] = (
        now + state.config.settings_cache_seconds,
        settings,
    )
    return settings


def invalidate(state: _State, workspace_id: str | None = None) -> None:
    """Forget cached settings (and inbound key lookups) after a change."""
    state.cache.pop(_AUTH_CACHE, None)
    if workspace_id is None:
        state.settings_cache.clear()
    else:
        state.settings_cache.pop(workspace_id, None)


def _effective(state: _State, workspace_id: str, row: t.Any) -> WorkspaceSettings:
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
    if from_config:
        api_host = str(config.api_host).rstrip("/")
    else:
        try:
            api_host = resolve_api_host(region, custom)
        except ValueError as exc:
            api_host, error = resolve_api_host("us"), str(exc)
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
        paused=paused,
        attention_reason=row.attention_reason if paused and row is not None else None,
        error=error,
    )


def get_or_create(state: _State, session: t.Any, workspace_id: str) -> t.Any:
    """The stored row of a workspace in ``session``, created when missing."""
    model = state.models.Workspace
    row = session.execute(
        sa.select(model).where(model.workspace_id == workspace_id)
    ).scalar_one_or_none()
    if row is None:
        row = model(workspace_id=workspace_id, enabled=True, region="us")
        session.add(row)
        session.flush()
    return row


def set_write_key(state: _State, row: t.Any, write_key: str) -> None:
    """Store a new write key encrypted; a new key lifts a 401/403 pause."""
    row.write_key_encrypted = state.box.encrypt(write_key)
    row.write_key_hint = hint(write_key)
    row.rejected_key_fingerprint = None
    row.attention_reason = None
    row.attention_at = None


def mark_rejected(
    state: _State, workspace_id: str, write_key: str, reason: str
) -> None:
    """Pause deliveries of a workspace whose current write key Segment rejected."""
    table = state.models.Workspace.__table__
    values = {
        "rejected_key_fingerprint": state.box.fingerprint(write_key),
        "attention_reason": reason,
        "attention_at": utcnow(),
        "updated_at": utcnow(),
    }
    with state.db.engine.begin() as conn:
        updated = conn.execute(
            table.update().where(table.c.workspace_id == workspace_id).values(values)
        ).rowcount
        if not updated:
            conn.execute(
                table.insert().values(
                    workspace_id=workspace_id, enabled=True, region="us", **values
                )
            )
    invalidate(state, workspace_id)


def clear_rejected(state: _State, workspace_id: str) -> None:
    """Lift a pause, e.g. after a test event was accepted."""
    table = state.models.Workspace.__table__
    with state.db.engine.begin() as conn:
        conn.execute(
            table.update()
            .where(table.c.workspace_id == workspace_id)
            .values(
                rejected_key_fingerprint=None,
                attention_reason=None,
                attention_at=None,
            )
        )
    invalidate(state, workspace_id)


def inbound_key_from_config(state: _State, workspace_id: str) -> bool:
    """Whether ``REFINER_SEGMENT_INBOUND_API_KEY`` is this workspace's key."""
    config = state.config
    return bool(config.inbound_api_key and workspace_id == config.default_workspace)


def rotate_inbound_key(state: _State, workspace_id: str) -> str:
    """Generate a new inbound API key, store only its hash, and return it once.

    Raises :exc:`ValueError` when the key is set in app config: a stored key
    would be shadowed by it.
    """
    from .crypto import hash_api_key
    from .crypto import new_api_key

    if inbound_key_from_config(state, workspace_id):
        raise ValueError(
            "The inbound API key is set in REFINER_SEGMENT_INBOUND_API_KEY;"
            " change it there."
        )
    key = new_api_key()
    session = state.db.session
    row = get_or_create(state, session, workspace_id)
    row.inbound_key_hash = hash_api_key(key)
    row.inbound_key_hint = hint(key)
    row.inbound_key_created_at = utcnow()
    session.commit()
    invalidate(state, workspace_id)
    return key


_AUTH_CACHE = "inbound_auth"


def inbound_auth(state: _State, key: str) -> tuple[str, str | None] | None:
    """The workspace an inbound API key belongs to and its shared secret, in one query.

    ``REFINER_SEGMENT_INBOUND_API_KEY`` names the default workspace; stored keys
    are looked up by hash and compared in constant time. Returns ``None`` for an
    unknown key; raises :exc:`SecretUnavailable` when the secret can't be read.
    A key that was found is remembered (by its hash) for
    ``SETTINGS_CACHE_SECONDS``, like the settings: a rotated key stops working
    at once in this process, and within that time in the others.
    """
    from .crypto import hash_api_key

    digest = hash_api_key(key)
    cache: dict[str, t.Any] = state.cache.setdefault(_AUTH_CACHE, {})
    now = time.monotonic()
    hit = cache.get(digest)
    if hit is not None and hit[0] > now:
        return t.cast("tuple[str, str | None]", hit[1])
    found = _inbound_lookup(state, key, digest)
    if found is not None and state.config.settings_cache_seconds > 0:
        if len(cache) > 1000:
            cache.clear()
        cache[digest] = (now + state.config.settings_cache_seconds, found)
    return found


def _inbound_lookup(
    state: _State, key: str, digest: str
) -> tuple[str, str | None] | None:
    import hmac

    table = state.models.Workspace.__table__
    config_key = state.config.inbound_api_key
    if config_key and hmac.compare_digest(key.encode(), str(config_key).encode()):
        workspace_id: str | None = state.config.default_workspace
        condition = table.c.workspace_id == workspace_id
    else:
        workspace_id = None
        condition = table.c.inbound_key_hash == digest
    # Autocommit: one round trip, no BEGIN and ROLLBACK around the SELECT.
    engine = state.db.engine.execution_options(isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                table.c.workspace_id,
                table.c.inbound_key_hash,
                table.c.webhook_secret_encrypted,
            ).where(condition)
        ).first()
    if workspace_id is None:
        if row is None or not hmac.compare_digest(row.inbound_key_hash, digest):
            return None
        workspace_id = str(row.workspace_id)
    token = row.webhook_secret_encrypted if row is not None else None
    return workspace_id, state.box.decrypt(token) if token else None
