"""Who may post inbound data: API keys (lookup, rotation) and the shared secret.

Keys are stored hashed and compared in constant time. Changes run in the
extension's own transactions, never on the host's ``db.session``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import typing as t

import sqlalchemy as sa

from .. import workspaces
from ..crypto import check_api_key
from ..crypto import hash_api_key
from ..crypto import hint
from ..crypto import new_api_key
from ..state import TTLCache
from ..state import autocommit
from ..tables.base import utcnow
from .parse import InboundError

if t.TYPE_CHECKING:
    from ..state import State

#: Longest API key looked up; anything longer is rejected without a query.
MAX_KEY_LENGTH = 512

#: What a found key gives: its workspace and the workspace's shared secret.
Found = tuple[str, str | None]


def key_from_config(state: State, workspace_id: str) -> bool:
    """Whether ``REFINER_SEGMENT_INBOUND_API_KEY`` is this workspace's key."""
    config = state.config
    return bool(config.inbound_api_key and workspace_id == config.default_workspace)


def key_exists(state: State, workspace_id: str) -> bool:
    """Whether the workspace has an inbound API key (stored or from config)."""
    if key_from_config(state, workspace_id):
        return True
    row = workspaces.stored(state, workspace_id)
    return bool(row is not None and row.inbound_key_hash)


def rotate_key(state: State, workspace_id: str) -> str:
    """Generate a new inbound API key, store only its hash, and return it once.

    Raises :exc:`ValueError` when the key is set in app config: a stored key
    would be shadowed by it.
    """
    if key_from_config(state, workspace_id):
        raise ValueError(
            "The inbound API key is set in REFINER_SEGMENT_INBOUND_API_KEY;"
            " change it there."
        )
    key = new_api_key()
    workspaces.update(
        state,
        workspace_id,
        {
            "inbound_key_hash": hash_api_key(key),
            "inbound_key_hint": hint(key),
            "inbound_key_created_at": utcnow(),
        },
    )
    invalidate(state)
    return key


def set_shared_secret(state: State, workspace_id: str, secret: str | None) -> None:
    """Store the Webhooks shared secret encrypted (``None`` removes it)."""
    encrypted = state.box.encrypt(secret) if secret else None
    workspaces.update(state, workspace_id, {"webhook_secret_encrypted": encrypted})
    invalidate(state)


def _cache(state: State) -> TTLCache[Found]:
    return state.local(
        "inbound_auth",
        lambda: TTLCache(state.config.settings_cache_seconds, max_entries=1000),
    )


def invalidate(state: State) -> None:
    """Forget the keys found (after a rotation or a new secret)."""
    _cache(state).clear()


def authenticate(state: State, key: str) -> Found | None:
    """The workspace an inbound API key belongs to and its shared secret, in one query.

    ``REFINER_SEGMENT_INBOUND_API_KEY`` names the default workspace; stored keys
    are looked up by hash and compared in constant time. Returns ``None`` for an
    unknown key; raises :exc:`~flask_refiner_segment.crypto.SecretUnavailable`
    when the secret can't be read. A key that was found is remembered (by its
    hash) for ``SETTINGS_CACHE_SECONDS``, like the settings: a rotated key stops
    working at once in this process, and within that time in the others.
    """
    digest = hash_api_key(key)
    cache = _cache(state)
    found = cache.get(digest)
    if found is None:
        found = _lookup(state, key, digest)
        if found is not None:
            cache.put(digest, found)
    return found


def _lookup(state: State, key: str, digest: str) -> Found | None:
    table = state.tables.outbound.Workspace.__table__
    config_key = state.config.inbound_api_key
    if config_key and check_api_key(key, hash_api_key(str(config_key))):
        workspace_id: str | None = state.config.default_workspace
        condition = table.c.workspace_id == workspace_id
    else:
        workspace_id = None
        condition = table.c.inbound_key_hash == digest
    with autocommit(state.db.engine).connect() as conn:
        row = conn.execute(
            sa.select(
                table.c.workspace_id,
                table.c.inbound_key_hash,
                table.c.webhook_secret_encrypted,
            ).where(condition)
        ).first()
    if workspace_id is None:
        if row is None or not check_api_key(key, row.inbound_key_hash):
            return None
        workspace_id = str(row.workspace_id)
    token = row.webhook_secret_encrypted if row is not None else None
    return workspace_id, state.box.decrypt(token) if token else None


def api_key(header: str | None) -> str | None:
    """The API key of ``Basic base64("<key>:")`` or ``Bearer <key>``, or ``None``."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        key = decoded.partition(":")[0]
    elif scheme == "bearer":
        key = value
    else:
        return None
    if not key or len(key) > MAX_KEY_LENGTH:
        return None
    return key


def check_signature(secret: str, body: bytes, signature: str | None) -> None:
    """Require ``X-Signature``: the hex HMAC-SHA1 of the exact raw body.

    That is what Segment's Webhooks destinations document ("generated using
    this shared secret and the request body"). A signature of anything less
    than the whole body (e.g. of the first message of a batch) admits nothing.

    :raises InboundError: 401 when it is missing or wrong.
    """
    if not signature:
        raise InboundError(401, "bad_signature", "Missing X-Signature.")
    given = signature.strip().lower().encode("ascii", "replace")
    expected = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest().encode()
    if not hmac.compare_digest(expected, given):
        raise InboundError(401, "bad_signature", "X-Signature does not match the body.")
