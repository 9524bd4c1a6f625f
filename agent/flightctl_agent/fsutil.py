"""Crash-safe file operations: every file the agent writes is complete or absent.

A write goes to a temporary file in the same directory, is flushed to disk, gets its mode and
owner, and is renamed over the target; a SIGKILL at any point leaves the old or the new file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes | str, mode: int = 0o644, uid: int | None = None,
                 gid: int | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if isinstance(data, str):
        data = data.encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if uid is not None or gid is not None:
            os.chown(tmp, -1 if uid is None else uid, -1 if gid is None else gid)
        # chmod after chown: chown clears setuid/setgid bits.
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, document, mode: int = 0o644) -> None:
    atomic_write(path, json.dumps(document, indent=2, sort_keys=True) + "\n", mode=mode)


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def wipe(path: Path) -> None:
    """Overwrite a secret with zeros before unlinking it; a missing file is fine."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.write(b"\0" * size)
            f.flush()
            os.fsync(f.fileno())
        path.unlink()
    except FileNotFoundError:
        pass
