"""Configuration files from the spec's inline provider, written onto the device (agent.md §5).

Moving from one spec to another removes files the new spec no longer has, writes the ones it
has (atomically, with mode, user and group), and skips files that are already identical. The
same operation from *desired* back to *current* is the rollback.
"""

from __future__ import annotations

import base64
import grp
import os
import posixpath
import pwd
import stat
from dataclasses import dataclass, field
from pathlib import Path

from flightctl_agent import errors, fsutil, protocol
from flightctl_agent.config import Paths

FORBIDDEN_ROOTS = ("/var/lib/flightctl", "/usr/lib/flightctl", "/etc/flightctl/certs")
FORBIDDEN_FILES = ("/etc/flightctl/config.yaml", "/etc/flightctl/config.yml")


@dataclass
class FileDiff:
    """Which device paths an update creates, updates and removes (drives hook conditions)."""

    created: list = field(default_factory=list)
    updated: list = field(default_factory=list)
    removed: list = field(default_factory=list)

    @property
    def changed(self) -> list:
        return self.created + self.updated + self.removed


def is_normalized(path: str) -> bool:
    """No ``.`` or ``..`` segment, no ``//``, no trailing ``/``: the path names one file and
    means what it says, so comparing prefixes compares places (``/etc/flightctl/./config.yaml``
    *is* the agent's config file)."""
    return bool(path) and posixpath.normpath(path) == path and not path.startswith("//")


def check_path(path: str) -> None:
    """Refuse a device path the agent must not write. The path must be absolute and
    normalized before any prefix is compared: the server checks this too, but the agent does
    not trust it with its own configuration and keys."""
    if not isinstance(path, str) or not path.startswith("/") or ":" in path:
        raise errors.UpdateError("config", "forbidden device path: must be absolute",
                                 element=str(path), status_text=errors.INVALID)
    if not is_normalized(path) or "\0" in path:
        raise errors.UpdateError("config", "forbidden device path: must be normalized "
                                 "(no '.', '..' or empty segments)", element=path,
                                 status_text=errors.INVALID)
    for root in FORBIDDEN_ROOTS:
        if path == root or path.startswith(root + "/"):
            raise errors.UpdateError("config", f'forbidden device path: writing under "{root}" '
                                     "is not allowed", element=path, status_text=errors.INVALID)
    if path in FORBIDDEN_FILES:
        raise errors.UpdateError("config", "forbidden device path: writing agent config file "
                                 "is not allowed", element=path, status_text=errors.INVALID)


def check_relative_path(path, section: str, element: str) -> None:
    """A file inside an application's directory: relative, normalized (a leading ``./`` is
    fine), never leaving the directory."""
    rest = path[2:] if isinstance(path, str) and path.startswith("./") else path
    if (not isinstance(rest, str) or rest in (".", "") or rest.startswith("/")
            or not is_normalized(rest)
            or rest.split("/", 1)[0] == ".." or "\0" in rest):
        raise errors.UpdateError(section, f"invalid application file path {path!r}: must be "
                                 "relative and normalized, inside the application",
                                 element=element, status_text=errors.INVALID)


def decode(entry: dict) -> bytes:
    content = entry.get("content") or ""
    if entry.get("contentEncoding") == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except ValueError as e:
            raise errors.UpdateError("config", f"decode base64 content: {e}",
                                     element=entry["path"], status_text=errors.INVALID) from e
    return content.encode()


def _mode(entry: dict) -> int:
    mode = entry.get("mode")
    if mode is None:
        return 0o644
    if isinstance(mode, str):
        mode = int(mode, 8) if mode.startswith("0") else int(mode)
    return int(mode) & 0o7777


def _ids(entry: dict) -> tuple[int, int]:
    def lookup(value, db, what):
        if value in (None, ""):
            return 0
        if isinstance(value, int) or str(value).isdigit():
            return int(value)
        try:
            return db(str(value))
        except KeyError:
            raise errors.UpdateError("config", f"unknown {what} {value!r}",
                                     element=entry["path"], status_text=errors.NOT_FOUND) from None
    return (lookup(entry.get("user"), lambda n: pwd.getpwnam(n).pw_uid, "user"),
            lookup(entry.get("group"), lambda n: grp.getgrnam(n).gr_gid, "group"))


def diff(paths: Paths, current: dict, desired: dict) -> FileDiff:
    """What applying desired over current would do to the device's files."""
    out = FileDiff()
    old = {f["path"] for f in protocol.inline_files(current)}
    for entry in protocol.inline_files(desired):
        target = paths(entry["path"])
        if not target.exists():
            out.created.append(entry["path"])
        elif not _identical(target, entry):
            out.updated.append(entry["path"])
    new = {f["path"] for f in protocol.inline_files(desired)}
    out.removed = sorted(old - new)
    return out


def _identical(target: Path, entry: dict) -> bool:
    try:
        st = target.stat()
        data = decode(entry)
        uid, gid = _ids(entry)
    except (OSError, errors.UpdateError):
        return False
    return (st.st_size == len(data) and stat.S_IMODE(st.st_mode) == _mode(entry)
            and st.st_uid == uid and st.st_gid == gid and target.read_bytes() == data)


def validate(spec: dict) -> None:
    for entry in protocol.inline_files(spec):
        check_path(entry["path"])
        decode(entry)


def sync(paths: Paths, current: dict, desired: dict) -> FileDiff:
    """Make the device's files match desired (coming from current); returns what changed."""
    result = diff(paths, current, desired)
    for path in result.removed:
        try:
            os.unlink(paths(path))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise errors.UpdateError("config", f"remove: {e}", element=path) from e
    for entry in protocol.inline_files(desired):
        check_path(entry["path"])
        target = paths(entry["path"])
        if _identical(target, entry):
            continue
        uid, gid = _ids(entry)
        # Only root may chown; an unprivileged agent (tests, simulator) keeps its own ids when
        # the spec asks for root.
        if os.geteuid() != 0 and uid == 0 and gid == 0:
            uid = gid = None
        try:
            fsutil.atomic_write(target, decode(entry), mode=_mode(entry), uid=uid, gid=gid)
        except OSError as e:
            raise errors.UpdateError("config", f"write: {e}", element=entry["path"]) from e
    return result
