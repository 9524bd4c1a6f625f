"""After the database is restored from a backup: devices reconnect before anything reaches them.

A backup is older than what the devices run. A device may since have received rendered
versions the restored database has never heard of; handing it "version 7" again could mean a
different spec under a number it has already applied. So, as in the reference
(agent.md §10.14, service.md §1.5):

``flightctl-server post-restore`` (:func:`mark_restored`)
    flags every device ``device-controller/awaitingReconnect=true`` (summary
    ``AwaitingReconnect``) and records ``SystemRestored``. Nothing is rendered for a flagged
    device.
The device's first ``/rendered`` call that names its version (:func:`reconnect`)
    clears the flag. If the device knows a newer version than the database, it is flagged
    ``device-controller/conflictPaused=true`` (summary ``ConflictPaused``, still no renders)
    until an operator resumes it (``POST /deviceactions/resume``); otherwise it is back to
    normal and rendered again. Either way the call answers at once with the rendered device,
    whose annotations tell the agent about the pause.
Resuming (:func:`devices.health.resume_devices`)
    clears the pause and renders the device; the new version is above anything the device
    reported (``max(stored, reported) + 1``), so the agent takes it.

A device that re-enrolls after a restore (its EnrollmentRequest names a rendered version) is
created already flagged (enrollment.services).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from devices import bulk
from devices.health import refresh_devices
from devices.hooks import request_render
from devices.models import Device
from flightctl.api.annotations import AWAITING_RECONNECT, CONFLICT_PAUSED
from flightctl.api.events import RESTORE_ACTOR, RESTORE_COMPONENT, record_event


def mark_restored() -> int:
    """Flag every device of every organization as awaiting its reconnection; returns how many.

    One UPDATE for the flag, then the service status in pages (devices.health.refresh_devices),
    then one ``SystemRestored`` event per organization that has devices.
    """
    with transaction.atomic():
        count = bulk.merge_annotations(Device.objects.all(), {AWAITING_RECONNECT: "true"})
    refresh_devices(Device.objects.all(), actor=RESTORE_ACTOR, component=RESTORE_COMPONENT)
    for org_id in Device.objects.values_list("org_id", flat=True).distinct().order_by():
        record_event(org_id, "System", "database", "SystemRestored",
                     f"The database was restored; {count} device(s) await reconnection.",
                     actor=RESTORE_ACTOR, component=RESTORE_COMPONENT)
    return count


def reconnect(org_id, name: str, known_version: int) -> bool:
    """A flagged device called in knowing ``known_version``: clear the flag and pause the device
    if it knows more than the database, or render it again otherwise. False if the device was
    not (or no longer) flagged, e.g. another of its calls got there first."""
    with transaction.atomic():
        device = (Device.objects.restrict(org_id).filter(name=name)
                  .select_for_update().first())
        annotations = dict(device.annotations or {}) if device is not None else {}
        if str(annotations.pop(AWAITING_RECONNECT, "")).lower() != "true":
            return False
        paused = known_version > device.rendered_version
        if paused:
            annotations[CONFLICT_PAUSED] = "true"
        device.annotations = annotations
        device.last_seen = timezone.now()  # it is calling right now
        device.resource_version += 1
        device.save(update_fields=["annotations", "last_seen", "resource_version",
                                   "updated_at"])
        refresh_devices(Device.objects.filter(pk=device.pk), actor=RESTORE_ACTOR,
                        component=RESTORE_COMPONENT)
        if not paused:
            request_render(device)  # whatever was held back while it was flagged
    return True


def restored() -> str:
    """The devices' part of a restore (registered with flightctl.backup.on_restored)."""
    return f"{mark_restored()} device(s) now await their reconnection"


def awaiting_reconnect() -> int:
    """How many devices still await their reconnection."""
    return Device.objects.filter(annotations__contains={AWAITING_RECONNECT: "true"}).count()
