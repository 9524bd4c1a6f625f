"""The device status the agent reports, and when it sends it (agent.md §7.1).

The status manager assembles the full DeviceStatus from its producers (system info,
applications, resources, OS, current spec, conditions) and PUTs it when it differs from the
last status the service accepted, or when the status interval says a refresh is due.
"""

from __future__ import annotations

import copy
import logging
import threading
import time

from flightctl_agent import protocol

log = logging.getLogger(__name__)


class StatusManager:
    """Owns the agent's conditions and summary and pushes status documents."""

    def __init__(self, agent):
        self.agent = agent
        self.conditions: list[dict] = []
        self.summary_override: dict | None = None
        self.system_info: dict = {}
        self.last_pushed: dict | None = None
        self.last_push_time = 0.0
        self._lock = threading.RLock()

    def set_condition(self, type_: str, status: bool, reason: str, message: str = "",
                      push: bool = True) -> None:
        with self._lock:
            self.conditions, changed = protocol.merge_condition(
                self.conditions, protocol.condition(type_, status, reason, message))
        if changed:
            log.info("Condition %s=%s reason=%s: %s", type_, status, reason, message)
            if push:
                self.push()

    def updating(self, reason: str, message: str, status: bool = True) -> None:
        self.set_condition("Updating", status, reason, message)

    def collect(self) -> dict:
        agent = self.agent
        status = protocol.empty_status()
        status["systemInfo"] = copy.deepcopy(self.system_info)
        current = agent.store.current
        status["config"] = {"renderedVersion": str(current.version)}
        try:
            apps, summary = agent.apps.status(current.spec)
        except Exception as e:  # status must go out even when podman misbehaves
            log.warning("application status unavailable: %s", e)
            apps, summary = [], {"status": "Unknown", "info": str(e)[:250]}
        status["applications"] = apps
        status["applicationsSummary"] = summary
        status["resources"] = agent.resources.statuses()
        mode = agent.os.mode
        status["capabilities"] = {"osMode": mode}
        if mode == "image":
            try:
                booted = agent.os.status().booted
                status["os"] = {"image": booted.image, "imageDigest": booted.digest}
            except Exception as e:
                log.warning("OS status unavailable: %s", e)
        systemd_units = agent.systemd_status(current.spec)
        if systemd_units is not None:
            status["systemd"] = systemd_units
        with self._lock:
            status["conditions"] = copy.deepcopy(self.conditions)
            override = self.summary_override
        alerts = agent.resources.alerts()
        resources = status["resources"]
        if override:
            status["summary"] = dict(override)
        elif "Critical" in resources.values():
            status["summary"] = {"status": "Error", "info": "; ".join(alerts)[:250]}
        elif "Warning" in resources.values():
            status["summary"] = {"status": "Degraded", "info": "; ".join(alerts)[:250]}
        elif agent.config.warnings:
            status["summary"] = {"status": "Degraded",
                                 "info": "; ".join(agent.config.warnings)[:250]}
        return status

    def push(self, force: bool = False) -> bool:
        """Send the status if it changed (or if forced); False when the service was unreachable."""
        client = self.agent.management_client
        if client is None:
            return False
        with self._lock:
            status = self.collect()
            if not force and status == self.last_pushed:
                self.last_push_time = time.monotonic()
                return True
            try:
                client.put_status(self.agent.name,
                                  protocol.status_document(self.agent.name, status))
            except Exception as e:
                log.warning("status update failed: %s", e)
                return False
            self.last_pushed = status
            self.last_push_time = time.monotonic()
            return True

    def invalidate(self) -> None:
        with self._lock:
            self.last_pushed = None

    def due(self, interval: float) -> bool:
        return time.monotonic() - self.last_push_time >= interval
