"""The audit log: one JSON line per write of a spec file (agent.md §4.2, ``audit.enabled``).

``/var/log/flightctl/audit.log``, mode 0600, a JSON object per line::

    {"ts": "...Z", "device": "<name>", "old_version": "3", "new_version": "4",
     "result": "success", "reason": "sync", "type": "desired",
     "fleet_template_version": "v2", "agent_version": "0.1.0"}

``type`` is the file written (``current``, ``desired``, ``rollback``); ``reason`` why
(``bootstrap``: first start, ``recovery``: some files were missing and all were reset,
``sync``: a new desired version, ``upgrade``: an update committed or an OS reboot prepared,
``rollback``: an update given up). At 300 KB the log is rotated to ``audit.log.1`` (older ones
shift up, three are kept). Writing the log never stops the agent: a failure is logged and
the record dropped.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from flightctl_agent import __version__

log = logging.getLogger(__name__)

AUDIT_LOG = "/var/log/flightctl/audit.log"
MAX_BYTES = 300 * 1024
BACKUPS = 3


class AuditLog:
    """``device`` is the device's name, or a function returning it (the agent learns its name
    only once its identity key exists, after the first spec files are written)."""

    def __init__(self, path: Path, device: str | Callable[[], str] = "", *, enabled: bool = True,
                 max_bytes: int = MAX_BYTES, backups: int = BACKUPS):
        self.path = Path(path)
        self.device = device
        self.enabled = enabled
        self.max_bytes = max_bytes
        self.backups = backups

    def record(self, kind: str, old_version, new_version, reason: str, *,
               ok: bool = True, fleet_template_version: str = "") -> None:
        if not self.enabled:
            return
        entry = {
            "ts": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "device": self._device(), "old_version": str(old_version),
            "new_version": str(new_version), "result": "success" if ok else "failure",
            "reason": reason, "type": kind,
            "fleet_template_version": fleet_template_version, "agent_version": __version__,
        }
        line = (json.dumps(entry, sort_keys=True) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rotate_for(len(line))
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)  # one write of one line: readers never see half of it
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("audit log %s not written: %s", self.path, exc)

    def _device(self) -> str:
        if not callable(self.device):
            return self.device
        try:
            return self.device()
        except (AttributeError, OSError, ValueError):  # no identity key yet
            return ""

    def _rotate_for(self, incoming: int) -> None:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size + incoming <= self.max_bytes:
            return
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
