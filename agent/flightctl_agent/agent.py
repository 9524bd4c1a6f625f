"""The agent process: bootstrap, enrollment, the spec long-poll and the engine loop (§2.1, §4.1).

Start-up initialises the identity and spec files, enrolls if the device has no management
certificate, detects a reboot and a rolled-back OS image, and reports status. Then a publisher
thread long-polls the rendered spec while the main loop applies the newest version, samples
resources, renews the certificate and pushes status on the configured interval.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime

from flightctl_agent import certs, enroll, fsutil, hooks, metrics, protocol, systeminfo
from flightctl_agent.apps import AppManager
from flightctl_agent.audit import AUDIT_LOG, AuditLog
from flightctl_agent.client import AgentClient, APIError
from flightctl_agent.config import AgentConfig
from flightctl_agent.console import ConsoleManager
from flightctl_agent.identity import (
    FileIdentity,
    IdentityUnavailable,
    TPMDeviceIdentity,
    tcti_for,
)
from flightctl_agent.osimage import OSManager
from flightctl_agent.podman import Podman
from flightctl_agent.prune import Pruner
from flightctl_agent.reconcile import Rebooting, Reconciler
from flightctl_agent.resources import ResourceManager
from flightctl_agent.spec import SpecStore
from flightctl_agent.status import StatusManager
from flightctl_agent.systemd import systemd_units

log = logging.getLogger("flightctl_agent")

LONG_POLL_TIMEOUT = 240.0
MIN_POLL_SPACING = 1.0


class Publisher(threading.Thread):
    """Long-polls ``/rendered`` and keeps the newest rendered spec for the engine."""

    def __init__(self, agent, known_version: int):
        super().__init__(name="spec-publisher", daemon=True)
        self.agent = agent
        self.known = known_version
        self.latest: protocol.RenderedSpec | None = None
        self.lock = threading.Lock()
        self.device_gone = threading.Event()

    def run(self) -> None:
        cfg = self.agent.config
        delay = cfg.spec_fetch_error_base_delay
        while not self.agent.stopping.is_set():
            started = time.monotonic()
            try:
                body = self.agent.management_client.get_rendered(
                    self.agent.name, str(self.known), timeout=LONG_POLL_TIMEOUT)
                delay = cfg.spec_fetch_error_base_delay
            except APIError as e:
                if e.status == 404 and "not found" in e.message.lower():
                    log.error("device not found on the service: re-enrolling")
                    self.device_gone.set()
                    return
                log.warning("fetching the rendered spec failed: %s", e)
                self.agent.stopping.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, cfg.spec_fetch_error_max_delay)
                continue
            if body is not None:
                self.agent.consoles.sync(body)  # starts new sessions; never waits for them
                rendered = protocol.parse_rendered(body)
                with self.lock:
                    if self.latest is None or rendered.version >= self.latest.version:
                        self.latest = rendered
                self.known = max(self.known, rendered.version)
                self.agent.wake.set()
            spent = time.monotonic() - started
            if spent < MIN_POLL_SPACING:
                self.agent.stopping.wait(MIN_POLL_SPACING - spent)

    def take(self) -> protocol.RenderedSpec | None:
        with self.lock:
            latest, self.latest = self.latest, None
            return latest


class Agent:
    """One device agent; everything it touches is under ``config.paths``."""

    def __init__(self, config: AgentConfig):
        self.config = config
        if config.metrics_enabled:  # counting from the start (off: no instruments at all)
            metrics.enable()
        paths = config.paths
        self.identity = self._identity()
        self.store = SpecStore(paths.data_dir, audit=AuditLog(
            paths(AUDIT_LOG), lambda: self.identity.name, enabled=config.audit_enabled))
        self.podman = Podman()
        self.apps = AppManager(paths, self.podman, config.pull_timeout)
        self.pruner = Pruner(paths.data_dir, self.podman, self.apps,
                             config.image_pruning_enabled)
        self.os = OSManager(timeout=config.pull_timeout)
        self.resources = ResourceManager()
        self.status = StatusManager(self)
        self.reconciler = Reconciler(self)
        self.management_client: AgentClient | None = None
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.publisher: Publisher | None = None
        self.cert_manager = certs.CertManager(self)
        self.consoles = ConsoleManager(self)
        self.exit_code = 0

    def _identity(self):
        paths, tpm = self.config.paths, self.config.tpm
        if tpm.auth_enabled:
            # The reference sets a random owner-hierarchy password (dev/test only); silently
            # running without one would not be what the owner asked for.
            raise IdentityUnavailable("tpm.auth-enabled: TPM hierarchy passwords are not "
                                      "supported by this agent; set it to false")
        if tpm.enabled:
            return TPMDeviceIdentity(paths.certs_dir, tcti_for(tpm.device_path),
                                     paths(tpm.storage_file_path))
        return FileIdentity(paths.certs_dir)

    @property
    def name(self) -> str:
        return self.identity.name

    # --- helpers used by the reconciler -----------------------------------------------------
    def systemd_status(self, spec: dict):
        patterns = (spec.get("systemd") or {}).get("matchPatterns")
        return systemd_units(patterns) if patterns else None

    def after_commit(self, desired: protocol.RenderedSpec) -> None:
        self.status.summary_override = None

    def reboot(self, action=None) -> None:
        """Reboot the device (``action`` performs it, e.g. ``bootc upgrade --apply``)."""
        self.status.push(force=True)
        log.info("Rebooting")
        if action is not None:
            action()
        else:
            subprocess.run(["systemctl", "reboot"], check=False)
        self.stopping.set()

    def decommission(self) -> None:
        """Report, wipe identity and all agent data, then reboot (agent.md §8.5)."""
        self.status.set_condition("DeviceDecommissioning", True, "Started",
                                  "Device started decommissioning")
        self.status.set_condition("DeviceDecommissioning", True, "Completed",
                                  "Device completed decommissioning and will wipe its "
                                  "management certificate")
        self.status.push(force=True)
        self.identity.wipe()
        for child in self.config.paths.data_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        log.info("Decommissioned: identity and data wiped")
        self.reboot()

    def build_management_client(self) -> None:
        metrics.certificate_loaded(self.identity.certificate())
        old = self.management_client
        self.management_client = AgentClient(
            self.config.management, cert_pem=self.identity.cert_path.read_bytes(),
            key_file=self.identity.tls_key_file(), workdir=None,
            client_key=self.identity.tls_client_key())
        if old is not None:
            # In-flight long-polls keep their own connection; close the old pool later.
            closer = threading.Timer(LONG_POLL_TIMEOUT + 10, old.close)
            closer.daemon = True
            closer.start()

    def collect_system_info(self) -> None:
        cfg = self.config
        tpm_vendor = getattr(self.identity, "vendor_info", lambda: "")()
        self.status.system_info = systeminfo.collect(
            cfg.paths, cfg.system_info, cfg.system_info_custom, cfg.system_info_timeout,
            cert=self.identity.certificate() if self.identity.has_certificate() else None,
            tpm_vendor=tpm_vendor)

    # --- lifecycle --------------------------------------------------------------------------
    def _detect_reboot(self) -> bool:
        path = self.config.paths.data_dir / "system.json"
        boot = systeminfo.boot_id(self.config.paths)
        try:
            previous = fsutil.read_json(path).get("id")
        except (OSError, ValueError):
            previous = None
        fsutil.write_json(path, {"time": protocol.rfc3339(datetime.now(UTC)),
                                 "id": boot})
        return previous is not None and previous != boot

    def run(self) -> int:
        """Run until stopped; IdentityUnavailable if the device's key cannot be used."""
        self._install_signals()
        self.identity.initialize()
        try:
            return self._run()
        finally:
            self.identity.close()

    def _run(self) -> int:
        cfg = self.config
        log.info("Device name: %s", self.name)
        if cfg.metrics_enabled:
            try:
                metrics.serve()
            except (OSError, ValueError) as e:  # metrics are never worth not managing the device
                log.error("metrics endpoint not started: %s", e)
        cfg.paths.data_dir.mkdir(parents=True, exist_ok=True)
        if self.store.ensure():
            log.info("Spec files initialised at renderedVersion 0")
        rebooted = self._detect_reboot()
        self.collect_system_info()
        if not self.identity.has_certificate():
            labels, problems = protocol.enrollment_labels(
                cfg.default_labels, cfg.label_from_systeminfo, self.status.system_info)
            for problem in problems:
                log.warning("%s; skipped", problem)
            try:
                enroll.enroll(self, self.status.collect(), labels, self.os.mode,
                              str(self.store.desired.version), stop=self.stopping.is_set)
            except enroll.EnrollmentRefused as e:
                log.error("%s", e)
                return 1
            if self.stopping.is_set():
                return 0
            self.collect_system_info()
        self.identity.enrolled()
        self.build_management_client()
        enroll.show(enroll.management_banner(cfg.enrollment.ui_endpoint, self.name))
        self.reconciler.ensure_booted_os()
        if rebooted:
            try:
                hooks.run_hooks(cfg.paths, hooks.AFTER_REBOOTING, rebooted=True)
            except Exception as e:
                log.error("afterrebooting hooks failed: %s", e)
        current = self.store.current
        if self.store.is_upgrading():
            self.status.updating("ApplyingUpdate", "Device is applying renderedVersion: "
                                 f"{self.store.desired.version}")
        elif not any(c["type"] == "Updating" for c in self.status.conditions):
            self.status.set_condition("Updating", False, "Updated",
                                      f"Updated to desired renderedVersion: {current.version}",
                                      push=False)
        self.status.push(force=True)
        self.publisher = Publisher(self, self.store.desired.version)
        self.publisher.start()
        self._loop()
        return self.exit_code

    def _loop(self) -> None:
        cfg = self.config
        next_status = time.monotonic() + random.uniform(0, cfg.status_update_jitter or 0)
        while not self.stopping.is_set():
            if self.publisher.device_gone.is_set():
                # The service forgot this device: drop the certificate, keep the key, re-enroll.
                fsutil.wipe(self.identity.cert_path)
                self.exit_code = 3
                return
            self._consume()
            try:
                self.reconciler.step()
            except Rebooting:
                return
            self.resources.tick()
            self.cert_manager.maybe_renew()
            if time.monotonic() >= next_status:
                self.status.push(force=True)
                next_status = time.monotonic() + cfg.status_update_interval
            self.wake.wait(1.0)
            self.wake.clear()

    def _consume(self) -> None:
        rendered = self.publisher.take() if self.publisher else None
        if rendered is None:
            return
        if rendered.conflict_paused:
            self.status.invalidate()
        desired = self.store.desired
        if rendered.version <= desired.version:
            return
        if self.store.is_failed(rendered):
            log.info("renderedVersion %s failed before; not retried", rendered.version)
            return
        log.info("New rendered version %s", rendered.version)
        self.store.set_desired(rendered)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum, frame):
            log.info("Received signal %s, shutting down", signum)
            self.stopping.set()
            self.wake.set()

        def reload(signum, frame):
            from flightctl_agent import config as config_module
            try:
                fresh = config_module.load(self.config.config_file,
                                           root=str(self.config.paths.root))
            except config_module.ConfigError as e:
                log.error("reload failed: %s", e)
                return
            self.config.system_info = fresh.system_info
            self.config.system_info_custom = fresh.system_info_custom
            self.config.log_level = fresh.log_level
            self.config.warnings = fresh.warnings
            logging.getLogger().setLevel(_level(fresh.log_level))
            self.collect_system_info()
            self.wake.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, reload)


def _level(name: str) -> int:
    return {"panic": logging.CRITICAL, "fatal": logging.CRITICAL, "error": logging.ERROR,
            "warn": logging.WARNING, "warning": logging.WARNING, "info": logging.INFO,
            "debug": logging.DEBUG, "trace": logging.DEBUG}[name]


def setup_logging(config: AgentConfig) -> None:
    prefix = f"{config.log_prefix} " if config.log_prefix else ""
    logging.basicConfig(level=_level(config.log_level), stream=None,
                        format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")
    # Per-request lines of the HTTP library would drown the agent's own log at debug level.
    logging.getLogger("urllib3").setLevel(logging.INFO)
    os.environ["FLIGHTCTL_AGENT_PID"] = str(os.getpid())
