"""Repository secrets at rest: AES-256-GCM with one server key.

Secret fields (passwords, tokens, private keys, client certificates) are stored as
``enc:v1:<base64(nonce || ciphertext)>`` inside the Repository's spec, so a database dump or
backup carries no usable credential. The key is 32 random bytes in ``encryption_key_file``
(default ``<data dir>/encryption.key``), created on first use with mode 0600; losing it makes the
stored secrets unreadable (operators re-enter them), which is the point of keeping it outside
the database.
"""

from __future__ import annotations

import base64
import copy
import os
import secrets
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from repos import guards
from repos.choices import MASK, SECRET_FIELDS

PREFIX = "enc:v1:"
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


def encrypt(plain: str) -> str:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(_key()).encrypt(nonce, plain.encode(), b"flightctl-repository")
    return PREFIX + base64.b64encode(nonce + sealed).decode()


def decrypt(value: str) -> str:
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return value  # written before encryption existed, or not a secret
    raw = base64.b64decode(value[len(PREFIX):])
    try:
        return AESGCM(_key()).decrypt(raw[:12], raw[12:], b"flightctl-repository").decode()
    except InvalidTag:
        raise SecretError("a repository secret cannot be decrypted with this server's key")


def _secret_slots(spec: dict):
    """(section name, section dict, key) of every secret present in ``spec``."""
    for section, key in SECRET_FIELDS:
        part = (spec or {}).get(section)
        if isinstance(part, dict) and key in part:
            yield section, part, key


def seal(spec: dict, stored: dict | None) -> dict:
    """The spec to store for an incoming one: new secrets encrypted, ``*****`` and unchanged
    secrets keeping the stored ciphertext (so an unchanged secret is not a spec change)."""
    sealed = copy.deepcopy(spec)
    for section, part, key in _secret_slots(sealed):
        old = ((stored or {}).get(section) or {}).get(key)
        value = part[key]
        if value == MASK:
            if old is not None:
                part[key] = old  # else left as is, for the caller to refuse
        elif old is not None and decrypt(old) == value:
            part[key] = old
        elif isinstance(value, str):
            part[key] = encrypt(value)
    return sealed


def unseal(spec: dict) -> dict:
    """The spec with its secrets in clear text, for talking to the repository."""
    plain = copy.deepcopy(spec or {})
    for _, part, key in _secret_slots(plain):
        part[key] = decrypt(part[key])
    return plain


def mask(spec: dict) -> dict:
    """The spec as every response shows it."""
    masked = copy.deepcopy(spec or {})
    for _, part, key in _secret_slots(masked):
        part[key] = MASK
    if "url" in masked:
        masked["url"] = guards.mask_url(masked["url"])
    return masked


def has_mask(spec: dict) -> bool:
    return any(part[key] == MASK for _, part, key in _secret_slots(spec))
