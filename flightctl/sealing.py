"""Secrets at rest: AES-256-GCM with one server key, for every kind that stores a credential.

A secret is stored as ``enc:v1:<base64(nonce || ciphertext)>``, so a database dump or backup
carries no usable credential. Each kind seals with its own *purpose* (the GCM associated data:
``flightctl-repository``, ``flightctl-authprovider``), so a ciphertext copied from one kind's
field into another's does not decrypt. The key is 32 random bytes in ``encryption_key_file``
(default ``<data dir>/encryption.key``), created on first use with mode 0600; losing it makes
the stored secrets unreadable (operators re-enter them), which is the point of keeping it
outside the database.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

PREFIX = "enc:v1:"
#: What every response shows in place of a secret; sent back on a PUT it keeps the stored one.
MASK = "*****"
_lock = threading.Lock()
_cache: dict[str, bytes] = {}


class SecretError(ValueError):
    """A stored secret cannot be decrypted (wrong or lost server key)."""


def key_path() -> Path:
    configured = settings.FLIGHTCTL.encryption_key_file
    return Path(configured) if configured else Path(settings.DATA_DIR) / "encryption.key"


def _key() -> bytes:
    path = key_path()
    with _lock:
        if str(path) in _cache:
            return _cache[str(path)]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                # O_EXCL: two processes starting together must not write two different keys.
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(base64.b64encode(secrets.token_bytes(32)).decode())
        key = base64.b64decode(path.read_text().strip())
        if len(key) != 32:
            raise SecretError(f"{path}: the encryption key must be 32 bytes (base64)")
        _cache[str(path)] = key
        return key


def encrypt(plain: str, purpose: bytes) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_key()).encrypt(nonce, plain.encode(), purpose)
    return PREFIX + base64.b64encode(nonce + sealed).decode()


def decrypt(value: str, purpose: bytes) -> str:
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return value  # written before encryption existed, or not a secret
    raw = base64.b64decode(value[len(PREFIX):])
    try:
        return AESGCM(_key()).decrypt(raw[:12], raw[12:], purpose).decode()
    except InvalidTag:
        raise SecretError(f"a {purpose.decode().removeprefix('flightctl-')} secret cannot be "
                          "decrypted with this server's key")


def keep_or_seal(value, stored, purpose: bytes):
    """The value to store for an incoming secret: ``*****`` or the unchanged secret keeps the
    stored ciphertext (so an unchanged secret is not a spec change), a new one is encrypted;
    ``*****`` with nothing stored is returned as is, for the caller to refuse."""
    if value == MASK:
        return stored if stored is not None else value
    if stored is not None and decrypt(stored, purpose) == value:
        return stored
    return encrypt(value, purpose) if isinstance(value, str) else value
