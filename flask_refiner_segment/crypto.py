"""Secrets at rest: the encrypted write key, hashed inbound keys, masking."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _secrets
import typing as t

from cryptography.fernet import Fernet
from cryptography.fernet import InvalidToken
from cryptography.fernet import MultiFernet

MASK = "••••"


class SecretUnavailable(RuntimeError):
    """A stored secret cannot be decrypted with the configured key."""


def _fernet_key(material: str) -> bytes:
    digest = hashlib.sha256(b"flask-refiner-segment:" + material.encode()).digest()
    return base64.urlsafe_b64encode(digest)


class SecretBox:
    """Encrypts secrets with keys derived from the configured key material.

    :param keys: the first key encrypts; every key is tried to decrypt, so an
        old key can stay listed while secrets are re-saved under the new one.
    """

    def __init__(self, keys: t.Sequence[str]) -> None:
        if not keys:
            raise RuntimeError(
                "flask-refiner-segment needs SECRET_KEY or"
                " REFINER_SEGMENT_ENCRYPTION_KEY to encrypt the write key."
            )
        self._fernet = MultiFernet([Fernet(_fernet_key(k)) for k in keys])
        self._hmac_key = _fernet_key(keys[0])

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError):
            raise SecretUnavailable(
                "The stored write key cannot be decrypted: SECRET_KEY or"
                " REFINER_SEGMENT_ENCRYPTION_KEY changed since it was saved."
                " Paste the write key again on the settings page."
            ) from None

    def fingerprint(self, value: str) -> str:
        """A keyed, non-reversible fingerprint: recognises a key without storing it."""
        return hmac.new(self._hmac_key, value.encode(), hashlib.sha256).hexdigest()[:32]


def make_box(
    encryption_key: str | t.Sequence[str] | None, secret_key: str | None
) -> SecretBox:
    """The box for an app's config: ``ENCRYPTION_KEY`` wins over ``SECRET_KEY``."""
    if isinstance(encryption_key, str):
        keys: list[str] = [encryption_key]
    elif encryption_key:
        keys = list(encryption_key)
    else:
        keys = [secret_key] if secret_key else []
    return SecretBox(keys)


def mask(value: str | None, hint: str | None = None) -> str:
    """Show only the last four characters: ``••••3fa9``."""
    tail = hint if hint is not None else (value or "")[-4:]
    return f"{MASK}{tail}" if tail else ""


def hint(value: str) -> str:
    """The part of a secret that may be shown: its last four characters."""
    return value[-4:]


def new_api_key() -> str:
    """A new random inbound API key."""
    return "rsk_" + _secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """Inbound API keys are random and long, so a plain SHA-256 suffices."""
    return hashlib.sha256(key.encode()).hexdigest()


def check_api_key(key: str, stored_hash: str | None) -> bool:
    """Compare in constant time."""
    if not stored_hash:
        return False
    return hmac.compare_digest(hash_api_key(key), stored_hash)
