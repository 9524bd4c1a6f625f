"""Repository secrets at rest, sealed with the server key (flightctl/sealing.py).

Secret fields (passwords, tokens, private keys, client certificates) are stored encrypted
inside the Repository's spec and shown as ``*****`` in every response.
"""

from __future__ import annotations

import copy

from flightctl import sealing
from flightctl.sealing import SecretError, key_path  # noqa: F401 - the repos' names for them
from repos import guards
from repos.choices import MASK, SECRET_FIELDS

PURPOSE = b"flightctl-repository"


def encrypt(plain: str) -> str:
    return sealing.encrypt(plain, PURPOSE)


def decrypt(value: str) -> str:
    return sealing.decrypt(value, PURPOSE)


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
        part[key] = sealing.keep_or_seal(part[key], old, PURPOSE)
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
