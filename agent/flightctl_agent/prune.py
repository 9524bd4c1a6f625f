"""Image pruning (agent.md §8.7, ``image-pruning.enabled``, off by default).

Application images pile up as versions come and go. Before each update the agent records the
images of the version it runs and the one it moves to in
``/var/lib/flightctl/image-artifact-references.json``; images that the previous record held but
neither of those two versions uses are the candidates. After the update commits they are
removed (``podman image rm``, never forced: an image a container still uses stays). So the
images of the running version and of the one before it are always kept, for a rollback.

A candidate leaves the reference file only once its image is gone, so one that could not be
removed is tried again after the next update. Pruning never fails an update: its errors are
logged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flightctl_agent import fsutil
from flightctl_agent.errors import UpdateError

log = logging.getLogger(__name__)

REFERENCES = "image-artifact-references.json"


class Pruner:
    def __init__(self, data_dir: Path, podman, apps, enabled: bool):
        self.file = Path(data_dir) / REFERENCES
        self.podman = podman
        self.apps = apps
        self.enabled = enabled
        self._candidates: list[str] = []

    def _images(self, spec: dict) -> set[str]:
        return {ref for ref, _policy in self.apps.images(spec)}

    def _recorded(self) -> set[str]:
        try:
            return set(json.loads(self.file.read_text()).get("references") or [])
        except (OSError, ValueError, AttributeError):
            return set()

    def _record(self, references: set[str]) -> None:
        fsutil.write_json(self.file, {"references": sorted(references)}, mode=0o600)

    def before_update(self, current_spec: dict, desired_spec: dict) -> None:
        """Record the two versions' images; remember what the previous record alone held."""
        if not self.enabled:
            return
        keep = self._images(current_spec) | self._images(desired_spec)
        self._candidates = sorted(self._recorded() - keep)
        self._record(keep | set(self._candidates))

    def after_update(self) -> None:
        """The update committed: remove the candidates' images (errors are only logged)."""
        if not self.enabled or not self._candidates or not self.podman.available():
            return
        gone = set()
        for ref in self._candidates:
            try:
                if not self.podman.image_exists(ref):
                    gone.add(ref)
                    continue
                result = self.podman.run("image", "rm", ref, check=False)
            except UpdateError as exc:
                log.warning("pruning %s failed: %s", ref, exc)
                continue
            if result.returncode == 0:
                log.info("Pruned image %s", ref)
                gone.add(ref)
            else:
                log.warning("pruning %s failed: %s", ref, (result.stderr or "").strip())
        self._candidates = [ref for ref in self._candidates if ref not in gone]
        try:
            self._record(self._recorded() - gone)
        except OSError as exc:
            log.warning("image references not updated: %s", exc)
