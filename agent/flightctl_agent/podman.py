"""Thin wrapper over the ``podman`` command line: pulls, containers, volumes, listings.

Everything the agent creates is labelled with the agent's instance label, so several agents
(tests, the simulator) on one host never see or touch each other's containers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess

from flightctl_agent import errors

log = logging.getLogger(__name__)

APP_LABEL = "io.flightctl.app"
AGENT_LABEL = "io.flightctl.agent"


def instance_label(root: str) -> str:
    """A short stable id of the agent instance (its root directory)."""
    return hashlib.sha256(str(root).encode()).hexdigest()[:8]


class Podman:
    """Runs podman commands; failures become UpdateErrors of the given component."""

    def __init__(self, executable: str = "podman"):
        self.executable = executable

    def available(self) -> bool:
        return shutil.which(self.executable) is not None

    def run(self, *args, component: str = "applications", element: str | None = None,
            timeout: float = 120, check: bool = True, cwd=None,
            argv0: str | None = None) -> subprocess.CompletedProcess:
        argv = [argv0 or self.executable, *args]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                    cwd=cwd)
        except FileNotFoundError as e:
            raise errors.UpdateError(component, f"{argv[0]} is not installed", element=element,
                                     status_text=errors.NOT_FOUND) from e
        except subprocess.TimeoutExpired as e:
            raise errors.UpdateError(component, f"{' '.join(argv[:3])}: context deadline "
                                     f"exceeded after {timeout:g}s", element=element,
                                     retryable=True, status_text=errors.UNAVAILABLE) from e
        if check and result.returncode != 0:
            message = (result.stderr or result.stdout).strip().splitlines()
            text = message[-1] if message else f"exit status {result.returncode}"
            raise errors.UpdateError(component, text, element=element,
                                     retryable=errors.is_network_error(text))
        return result

    def image_exists(self, ref: str) -> bool:
        return self.run("image", "exists", ref, check=False).returncode == 0

    def pull(self, ref: str, timeout: float, policy: str = "IfNotPresent") -> bool:
        """Pull an image; returns True if a pull happened. Missing images are not retried."""
        if policy == "Never" or (policy == "IfNotPresent" and self.image_exists(ref)):
            return False
        log.info("Prefetching OCI target: %s", ref)
        self.run("pull", "-q", ref, component="prefetch", element=ref, timeout=timeout)
        return True

    def image_digest(self, ref: str) -> str:
        r = self.run("image", "inspect", "--format", "{{.Digest}}", ref, check=False)
        return r.stdout.strip() if r.returncode == 0 else ""

    def containers(self, instance: str) -> list[dict]:
        r = self.run("ps", "-a", "--format", "json", "--filter", f"label={AGENT_LABEL}={instance}",
                     check=False)
        if r.returncode != 0:
            return []
        try:
            return json.loads(r.stdout or "[]") or []
        except ValueError:
            return []

    def remove_containers(self, ids: list[str], element: str | None = None) -> None:
        if ids:
            # -t 2: a short grace period; apps are being replaced, not shut down politely.
            self.run("rm", "-f", "-t", "2", *ids, element=element)

    def restart_counts(self, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        r = self.run("inspect", "--format", "{{.Id}} {{.RestartCount}}", *ids, check=False)
        counts = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
        return counts
