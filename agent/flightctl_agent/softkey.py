"""The software identity's key operations, run in a short-lived child process of the agent.

Creating the device key and signing a CSR with it need ``cryptography``, whose import costs
~10 MB of RSS that a process never gives back. They happen a few times in a device's life (at
enrollment, at each certificate renewal) while the agent runs for months, so ``FileIdentity``
runs them here, as ``python -m flightctl_agent.softkey``, and the long-running agent never
loads the library (docs/scale.md, "Sixth round: the agent's footprint"). TLS needs no key
object: OpenSSL reads the key file itself for each connection.

The child prints one JSON object, ``{"name": <device name>, "csr": <PEM>}``; a failure is one
line on stderr and a non-zero exit status.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flightctl_agent import fsutil, protocol

TIMEOUT = 120.0  # key generation and one signature take well under a second


class SoftKeyError(OSError):
    """The child could not use the key (not a software key, unwritable, interpreter gone)."""


def enrollment_csr(key_path: Path, csr_path: Path) -> dict:
    """The key (created, 0600, on first start), the device name and the enrollment CSR, which
    is kept in ``csr_path`` and reused across restarts while its CN is the device's name."""
    return _child("enrollment", str(key_path), str(csr_path))


def renewal_csr(key_path: Path) -> dict:
    """The device name and a fresh CSR from the same key, for certificate renewal."""
    return _child("renewal", str(key_path))


def _child(*args: str) -> dict:
    # The agent may run from a private site directory that its launcher put on sys.path (the
    # RPM's /usr/bin/flightctl-agent does): the child must import this same package. -P keeps
    # the working directory off its path.
    here = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run([sys.executable, "-P", "-m", __name__, *args], text=True,
                              capture_output=True, timeout=TIMEOUT,
                              env={**os.environ, "PYTHONPATH": path})
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SoftKeyError(f"key operation failed: {e}") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise SoftKeyError(lines[-1] if lines else f"key operation exited {done.returncode}")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise SoftKeyError(f"key operation answered {done.stdout[:80]!r}") from None


# --- the child ------------------------------------------------------------------------------

def _key(key_path: Path, create: bool):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if key_path.exists():
        try:
            return serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (TypeError, ValueError) as e:
            # e.g. the TSS2 blob of a device that ran with tpm.enabled
            raise SystemExit(f"{key_path} is not a software key ({e}); "
                             "is tpm.enabled missing?") from None
    if not create:
        raise SystemExit(f"{key_path} does not exist")
    key = ec.generate_private_key(ec.SECP256R1())
    fsutil.atomic_write(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), mode=0o600)
    return key


def main(argv: list[str]) -> dict:
    command, key_path = argv[0], Path(argv[1])
    key = _key(key_path, create=command == "enrollment")
    name = protocol.device_name(key.public_key())
    if command == "enrollment":
        csr_path = Path(argv[2])
        if csr_path.exists():
            pem = csr_path.read_bytes()
            if protocol.csr_common_name(pem) == name:
                return {"name": name, "csr": pem.decode()}
        pem = protocol.build_csr(key, name)
        fsutil.atomic_write(csr_path, pem, mode=0o600)
        return {"name": name, "csr": pem.decode()}
    if command == "renewal":
        return {"name": name, "csr": protocol.build_csr(key, name).decode()}
    raise SystemExit(f"unknown key operation {command!r}")


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
