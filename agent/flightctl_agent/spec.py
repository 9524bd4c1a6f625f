"""The device's specs on disk: ``current``, ``desired`` and ``rollback`` (agent.md §4.2, §4.3).

*current* is what the device runs, *desired* what it is moving to (``current != desired`` means an
update is in progress, also across a crash or reboot), *rollback* the OS image to return to if
the device does not come back healthy from a reboot. Failed versions and spec hashes are
remembered (on disk too, so a reboot into a broken OS image does not retry it) and never retried.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from flightctl_agent import fsutil, protocol
from flightctl_agent.audit import AuditLog

DESIRED_VERSION_ANNOTATION = "agent/desiredVersion"
DESIRED_HASH_ANNOTATION = "agent/desiredSpecHash"

RETRY_BASE, RETRY_FACTOR, RETRY_MAX = 30.0, 1.5, 300.0
FLEET_TV_ANNOTATION = "fleet-controller/renderedTemplateVersion"


class SpecStore:
    """current/desired/rollback spec files plus the failed set and per-version retry state."""

    def __init__(self, data_dir: Path, retry_base: float = RETRY_BASE,
                 audit: AuditLog | None = None):
        self.dir = data_dir
        self.retry_base = retry_base
        self.audit = audit or AuditLog(data_dir / "audit.log", enabled=False)
        self.failed_file = data_dir / "failed-versions.json"
        self._tries: dict[int, tuple[int, float]] = {}

    def _file(self, kind: str) -> Path:
        return self.dir / f"{kind}.json"

    def _write(self, kind: str, document: dict, reason: str, *, old=None) -> None:
        """Write one spec file (atomically) and audit it, success or failure."""
        if old is None:
            try:
                old = self.read(kind).version
            except (OSError, ValueError):
                old = ""
        annotations = (document.get("metadata") or {}).get("annotations") or {}
        new = annotations.get(protocol.RENDERED_VERSION_ANNOTATION, "")
        try:
            fsutil.write_json(self._file(kind), document)
        except OSError:
            self.audit.record(kind, old, new, reason, ok=False,
                              fleet_template_version=annotations.get(FLEET_TV_ANNOTATION, ""))
            raise
        self.audit.record(kind, old, new, reason,
                          fleet_template_version=annotations.get(FLEET_TV_ANNOTATION, ""))

    def ensure(self) -> bool:
        """Create the three files at version 0; if only some exist, reset all (recovery)."""
        present = [self._file(k).exists() for k in ("current", "desired", "rollback")]
        if all(present):
            try:
                for k in ("current", "desired", "rollback"):
                    fsutil.read_json(self._file(k))
                return False
            except (ValueError, OSError):
                pass
        reason = "recovery" if any(present) else "bootstrap"
        for k in ("current", "desired", "rollback"):
            self._write(k, protocol.spec_document(0), reason, old="")
        return True

    def read(self, kind: str) -> protocol.RenderedSpec:
        return protocol.parse_rendered(fsutil.read_json(self._file(kind)))

    @property
    def current(self) -> protocol.RenderedSpec:
        return self.read("current")

    @property
    def desired(self) -> protocol.RenderedSpec:
        return self.read("desired")

    def is_upgrading(self) -> bool:
        return self.current.version != self.desired.version

    def set_desired(self, rendered: protocol.RenderedSpec) -> None:
        self._write("desired", rendered.document, "sync")

    def upgrade(self) -> None:
        """Commit: desired becomes current; rollback is cleared."""
        desired = fsutil.read_json(self._file("desired"))
        self._write("current", desired, "upgrade")
        self._write("rollback", {"metadata": {"annotations": {
            protocol.RENDERED_VERSION_ANNOTATION: ""}}, "spec": {}}, "upgrade")
        self._tries.pop(protocol.parse_rendered(desired).version, None)

    def rollback(self) -> None:
        """Give up on desired: it becomes a copy of current again."""
        self._write("desired", fsutil.read_json(self._file("current")), "rollback")

    def create_rollback(self, booted_image: str) -> None:
        """Before an OS reboot: remember the image to return to and the version being tried."""
        current, desired = self.current, self.desired
        image = (current.spec.get("os") or {}).get("image") or booted_image
        self._write("rollback", protocol.spec_document(
            current.version, {"os": {"image": image}},
            {DESIRED_VERSION_ANNOTATION: str(desired.version),
             DESIRED_HASH_ANNOTATION: desired.spec_hash}), "upgrade")

    def rollback_spec(self) -> dict:
        try:
            return fsutil.read_json(self._file("rollback"))
        except (OSError, ValueError):
            return {}

    # --- failed versions ------------------------------------------------------------------
    def _failed(self) -> dict:
        try:
            return json.loads(self.failed_file.read_text())
        except (OSError, ValueError):
            return {"versions": [], "hashes": []}

    def mark_failed(self, version: int, spec_hash: str = "") -> None:
        failed = self._failed()
        if version not in failed["versions"]:
            failed["versions"].append(version)
        if spec_hash and spec_hash not in failed["hashes"]:
            failed["hashes"].append(spec_hash)
        fsutil.write_json(self.failed_file, failed)

    def is_failed(self, rendered: protocol.RenderedSpec) -> bool:
        failed = self._failed()
        return rendered.version in failed["versions"] or rendered.spec_hash in failed["hashes"]

    def failed_versions(self) -> list[int]:
        return list(self._failed()["versions"])

    # --- retry pacing ---------------------------------------------------------------------
    def record_try(self, version: int) -> None:
        tries, _ = self._tries.get(version, (0, 0.0))
        delay = min(self.retry_base * RETRY_FACTOR ** tries, RETRY_MAX)
        delay *= 1 + random.uniform(-0.1, 0.1)
        self._tries[version] = (tries + 1, time.monotonic() + delay)

    def ready_to_retry(self, version: int) -> bool:
        _, not_before = self._tries.get(version, (0, 0.0))
        return time.monotonic() >= not_before
