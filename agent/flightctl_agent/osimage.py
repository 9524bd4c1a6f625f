"""The device's operating system image, managed through the ``bootc`` command line.

An *image-mode* device boots an OCI image; bootc keeps a booted, an optional staged and an
optional rollback deployment. Switching stages the new image, applying reboots into it. Without
bootc on PATH the device is in *package mode*: it reports no image and rejects OS targets
(agent.md §4.7).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import dataclass

from flightctl_agent import errors

log = logging.getLogger(__name__)


@dataclass
class Deployment:
    """One bootc deployment: the image reference and its digest."""

    image: str = ""
    digest: str = ""


@dataclass
class OSStatus:
    """What ``bootc status`` reports: booted, staged and rollback deployments."""

    booted: Deployment
    staged: Deployment | None = None
    rollback: Deployment | None = None


def _deployment(entry) -> Deployment | None:
    if not entry:
        return None
    image = entry.get("image") or {}
    ref = (image.get("image") or {}).get("image", "")
    return Deployment(image=ref, digest=image.get("imageDigest", ""))


def parse_bootc_status(document: dict) -> OSStatus:
    status = document.get("status") or {}
    return OSStatus(booted=_deployment(status.get("booted")) or Deployment(),
                    staged=_deployment(status.get("staged")),
                    rollback=_deployment(status.get("rollback")))


class OSManager:
    """OS image operations; ``mode`` is ``image`` when bootc is present, else ``package``."""

    def __init__(self, executable: str = "bootc", timeout: float = 600):
        self.executable = executable
        self.timeout = timeout

    @property
    def mode(self) -> str:
        return "image" if shutil.which(self.executable) else "package"

    def _run(self, *args, component="os", element=None, timeout=None) -> str:
        try:
            r = subprocess.run([self.executable, *args], capture_output=True, text=True,
                               timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired as e:
            raise errors.UpdateError(component, f"bootc {args[0]} timed out", element=element,
                                     retryable=True) from e
        except FileNotFoundError as e:
            raise errors.UpdateError(component, "bootc is not installed", element=element,
                                     status_text=errors.NOT_FOUND) from e
        # 137: bootc was killed by the reboot it started; that is success.
        if r.returncode not in (0, 137):
            raise errors.UpdateError(component, (r.stderr or r.stdout).strip()
                                     or f"bootc exited {r.returncode}", element=element)
        return r.stdout

    def status(self) -> OSStatus:
        if self.mode == "package":
            return OSStatus(booted=Deployment())
        out = self._run("status", "--format=json", timeout=60)
        try:
            return parse_bootc_status(json.loads(out))
        except ValueError as e:
            raise errors.UpdateError("os", f"bootc status: invalid JSON: {e}",
                                     retryable=True) from e

    def switch(self, image: str, local: bool = True) -> None:
        """Stage ``image``: from podman's storage, where the update's prefetch pulled it, or
        (``local=False``, a device without podman) from its registry, which bootc reads."""
        log.info("Switching OS image to %s", image)
        transport = ["--transport", "containers-storage"] if local else []
        self._run("switch", *transport, "--retain", image, element=image)

    def apply(self) -> None:
        """Reboot into the staged deployment (does not return on a real device)."""
        self._run("upgrade", "--apply", component="os reconciliation")

    def rollback_apply(self) -> None:
        self._run("rollback", "--apply", component="os reconciliation")
