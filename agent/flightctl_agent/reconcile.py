"""Moving the device from its current spec to its desired spec, transactionally (agent.md §4.5).

One *update* walks the reference's phases: **Preparing** (resource alerts, download schedule,
pre-pull every image, before-updating hooks, update schedule) changes nothing on the device;
**ApplyingUpdate** replaces applications and writes config files; then either the OS image is
switched and the device reboots (the update is committed after the reboot), or after-updating
hooks run and new applications start. Success commits desired as current. A non-retryable
failure marks the version failed and re-applies the current spec, so the device ends on the
old spec or the new one, never a mix.
"""

from __future__ import annotations

import logging

from flightctl_agent import errors, files, hooks, policy, protocol
from flightctl_agent.errors import APPLYING, PREPARING, REBOOTING, UpdateError

log = logging.getLogger(__name__)


class Rebooting(Exception):
    """The device is rebooting into a new OS image; the update completes after the reboot."""


class Reconciler:
    """Runs updates for one agent; see the module docstring for the phases."""

    def __init__(self, agent):
        self.agent = agent

    @property
    def status(self):
        return self.agent.status

    def step(self) -> None:
        """Work on the desired version if it differs from current and is due for a try."""
        store = self.agent.store
        current, desired = store.current, store.desired
        if current.version == desired.version:
            return
        if store.is_failed(desired):
            store.rollback()
            return
        if not store.ready_to_retry(desired.version):
            return
        self.update(current, desired)

    def update(self, current: protocol.RenderedSpec, desired: protocol.RenderedSpec) -> None:
        store, version = self.agent.store, desired.version
        phase = PREPARING
        try:
            diff = self._prepare(current, desired)
            self.agent.pruner.before_update(current.spec, desired.spec)
            phase = APPLYING
            self._apply(current, desired)
            phase = REBOOTING
            self._after(current, desired, diff)
        except Rebooting:
            raise
        except UpdateError as e:
            e.phase = e.phase or phase
            self._failed(current, desired, e, touched=phase != PREPARING)
            return
        except Exception as e:  # an agent bug must still end the update cleanly
            log.exception("unexpected error during update")
            self._failed(current, desired, UpdateError("agent", str(e), phase=phase),
                         touched=phase != PREPARING)
            return
        store.upgrade()
        self.agent.after_commit(desired)
        self.status.updating("Updated", f"Updated to desired renderedVersion: {version}",
                             status=False)
        log.info("Updated to desired renderedVersion: %s", version)
        self.agent.pruner.after_update()

    # --- phases -----------------------------------------------------------------------------
    def _prepare(self, current, desired) -> files.FileDiff:
        agent, spec, version = self.agent, desired.spec, desired.version
        os_target = spec.get("os") or {}
        if (os_target.get("image") or os_target.get("catalogItemRef")) \
                and agent.os.mode == "package":
            raise UpdateError("os", "OS image updates are not supported on a package-mode "
                              "device", element=os_target.get("image"),
                              status_text=errors.INVALID)
        agent.resources.sync(spec.get("resources"))
        critical = agent.resources.critical_blocking()
        if critical:
            raise errors.NotReady("resources", f"critical resource alert: {critical}")
        policy.check(spec.get("updatePolicy"), "downloadSchedule")
        self.status.updating("Preparing", "Device is preparing an update to renderedVersion: "
                             f"{version}")
        files.validate(spec)
        agent.apps.validate(spec)
        self._prefetch(current, desired)
        diff = files.diff(agent.config.paths, current.spec, spec)
        hooks.run_hooks(agent.config.paths, hooks.BEFORE_UPDATING, diff)
        policy.check(spec.get("updatePolicy"), "updateSchedule")
        self.status.updating("ReadyToUpdate", "Device is ready to apply update to "
                             f"renderedVersion: {version}")
        return diff

    def _prefetch(self, current, desired) -> None:
        agent = self.agent
        if not agent.podman.available():
            # Nothing can be pulled ahead: applications will report that podman is missing,
            # and bootc pulls an OS image from its registry itself (OSManager.switch).
            return
        targets = list(agent.apps.images(desired.spec))
        image = (desired.spec.get("os") or {}).get("image")
        if image and image != (current.spec.get("os") or {}).get("image"):
            targets.insert(0, (image, "IfNotPresent"))
        done = 0
        for ref, pull_policy in targets:
            try:
                agent.podman.pull(ref, agent.config.pull_timeout, pull_policy)
            except UpdateError as e:
                e.component, e.element = "prefetch", ref
                raise
            done += 1
        if targets:
            log.info("All %d images ready", done)

    def _apply(self, current, desired) -> None:
        agent = self.agent
        self.status.updating("ApplyingUpdate",
                             f"Device is applying renderedVersion: {desired.version}")
        agent.apps.sync(current.spec, desired.spec)
        files.sync(agent.config.paths, current.spec, desired.spec)

    def _after(self, current, desired, diff) -> None:
        agent = self.agent
        if desired.spec.get("decommissioning") and not current.spec.get("decommissioning"):
            agent.decommission()
            raise Rebooting()
        image = (desired.spec.get("os") or {}).get("image")
        if image and agent.os.mode == "image":
            booted = agent.os.status().booted.image
            if image != booted:
                agent.os.switch(image, local=agent.podman.available())
                hooks.run_hooks(agent.config.paths, hooks.BEFORE_REBOOTING, diff)
                agent.store.create_rollback(booted)
                self.status.summary_override = {
                    "status": "Rebooting", "info": f"Device is rebooting into OS image: {image}"}
                self.status.updating("Rebooting", f"Device is rebooting into OS image: {image}")
                agent.reboot(lambda: agent.os.apply())
                raise Rebooting()
        hooks.run_hooks(agent.config.paths, hooks.AFTER_UPDATING, diff)
        agent.apps.start_pending()

    # --- failure ----------------------------------------------------------------------------
    def _failed(self, current, desired, error: UpdateError, touched: bool) -> None:
        store, version = self.agent.store, desired.version
        log.error("Failed to update to renderedVersion: %s: %s", version, error)
        if touched:
            # Restore the current spec's files and applications over whatever was applied.
            self.restore(desired.spec, current.spec)
        message = protocol.structured_error_message(error.phase, error.component,
                                                    error.element, error.status_text)
        if error.retryable:
            store.record_try(version)
            log.info("Requeuing version %s", version)
            self.status.updating("ApplyingUpdate", f"Device is applying renderedVersion: "
                                 f"{version}: retrying: {message}")
            return
        store.mark_failed(version, desired.spec_hash)
        if touched:
            self.status.updating("RollingBack", "Device is rolling back to the previous "
                                 f"renderedVersion: {current.version}")
        store.rollback()
        self.status.updating("Error", message, status=False)

    def restore(self, failed_spec: dict, good_spec: dict) -> None:
        agent = self.agent
        log.info("Attempting to rollback to previous renderedVersion")
        try:
            agent.apps.sync(failed_spec, good_spec)
            files.sync(agent.config.paths, failed_spec, good_spec)
            agent.apps.start_pending()
        except Exception as e:  # keep going: the failure is reported either way
            log.error("rollback incomplete: %s", e)

    # --- after a reboot ---------------------------------------------------------------------
    def ensure_booted_os(self) -> None:
        """After a (re)start: detect a rollback to the previous OS image (agent.md §4.7)."""
        agent, store = self.agent, self.agent.store
        if agent.os.mode != "image":
            return
        current, desired = store.current, store.desired
        image = (desired.spec.get("os") or {}).get("image")
        osstat = agent.os.status()
        booted = osstat.booted.image
        if current.version != desired.version and image and image != booted \
                and (current.spec.get("os") or {}).get("image", booted) == booted \
                and osstat.staged is None \
                and (store.rollback_spec().get("metadata") or {}).get("annotations", {}).get(
                    "agent/desiredVersion") == str(desired.version):
            log.error("Booted image %s, expected %s", booted, image)
            store.mark_failed(desired.version, desired.spec_hash)
            self.status.updating("RollingBack", "Device is rolling back to the previous "
                                 f"renderedVersion: {current.version}")
            self.restore(desired.spec, current.spec)
            store.rollback()
            message = protocol.structured_error_message(
                REBOOTING, "os", image, f"booted image {booted}, expected {image}")
            self.status.updating("Error", message, status=False)
            return
        annotations = (store.rollback_spec().get("metadata") or {}).get("annotations") or {}
        failed = annotations.get("agent/desiredVersion")
        if current.version == desired.version and failed and failed != str(current.version):
            # The OS was rolled back while the agent was not running.
            store.mark_failed(int(failed), annotations.get("agent/desiredSpecHash", ""))
