"""Server-side device status: what the service concludes about a device from its report.

The agent reports what it observes (resources, applications, conditions, the rendered version
it runs). The service owns four members of ``DeviceStatus`` and recomputes them on every status
write and whenever time alone changes the answer (api.md §4.3, service.md §1.7):

``summary``
    In precedence order: ``AwaitingReconnect`` and ``ConflictPaused`` (device annotations set
    by the restore flow; the annotation is the only source of truth, so clearing it clears the
    status), ``Unknown`` when the device has not reported within the disconnection window
    (``device_disconnected_timeout``, 5 min by default) or never, ``Rebooting`` while the
    agent's ``Updating`` condition says so, ``Error``/``Degraded`` when a resource monitor is
    ``Critical``/``Warning``, else ``Online``.
``updated``
    ``Unknown`` when a device that has reported before goes silent, ``Updating`` while the
    agent's ``Updating`` condition is ``True``, ``UpToDate`` when the agent runs the latest
    rendered version (and, for a fleet member, that render came from the fleet's current
    TemplateVersion) with a valid spec and the OS image it was asked for, else ``OutOfDate``.
``applicationsSummary``
    ``Unknown`` when disconnected, ``Degraded`` while rebooting with applications,
    ``NoApplications`` when none are reported, else the agent's verdict.
``lifecycle``
    Follows the agent's ``DeviceDecommissioning`` condition (``Started`` → Decommissioning,
    ``Completed``/``Error`` → Decommissioned); otherwise stays where enrollment or the
    decommission API put it.

Transitions of these members (and of the agent-reported resources and OS image) are recorded
as events. The pure functions (:func:`compute_service_status`, :func:`status_change_events`)
know nothing of the database; :func:`refresh_devices` and :func:`check_connectivity` apply them
to sets of rows with a constant number of statements per page of 1,000 devices.
"""

from __future__ import annotations

import copy
import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from devices import bulk, owners
from devices.choices import ApplicationsSummaryStatus as Apps
from devices.choices import DeviceLifecycleStatus as Lifecycle
from devices.choices import DeviceSummaryStatus as Summary
from devices.choices import DeviceUpdatedStatus as Updated
from devices.choices import ResourceStatus
from devices.hooks import request_renders
from devices.models import Device
from devices.status import complete_status
from devices.summary import FLEET_OWNER_PREFIX
from flightctl.api.annotations import (
    AWAITING_RECONNECT,
    CONFLICT_PAUSED,
    LAST_ROLLOUT_ERROR,
    RENDERED_TEMPLATE_VERSION,
    TEMPLATE_VERSION,
)
from flightctl.api.conditions import find_condition
from flightctl.api.events import API_COMPONENT, WORKER_ACTOR, WORKER_COMPONENT
from flightctl.models import Event, EventType

#: the status members the service computes; everything else is the agent's
SERVICE_MEMBERS = ("summary", "updated", "applicationsSummary", "lifecycle")
#: summaries of a device that is (or claims to be) connected: leaving the window makes it Unknown
CONNECTED_SUMMARIES = (
    Summary.ONLINE, Summary.DEGRADED, Summary.ERROR, Summary.REBOOTING, Summary.POWERED_OFF,
)
RESOURCES = (("cpu", "CPU"), ("memory", "Memory"), ("disk", "Disk"))

PAGE_SIZE = 1000

MSG_NOT_REPORTED = "Device has not reported yet."
MSG_HEALTHY = "Device's system resources are healthy."
MSG_REBOOTING = "Device is rebooting."
MSG_AWAITING_RECONNECT = "Device has not reconnected since the service was restored."
MSG_CONFLICT_PAUSED = (
    "Device reconciliation is paused: the device runs a newer spec than the restored service "
    "knows about. Resume the device to continue."
)
MSG_NO_APPS = "Device has not reported any application workloads yet."
MSG_APPS_HEALTHY = "All application workloads are healthy."
MSG_FLEET_NOT_SCHEDULED = "Device has not yet been scheduled for update to the fleet's latest spec."


# -- helpers --------------------------------------------------------------------------------


def go_duration(seconds: float) -> str:
    """A duration as Go prints it (``5m0s``, ``1h0m0s``, ``45s``): the reference's messages."""
    if seconds != int(seconds) or seconds <= 0:
        return f"{seconds:g}s"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def disconnected_info(disconnected_after: float) -> str:
    return f"Device is disconnected (last seen more than {go_duration(disconnected_after)})."


def _flag(annotations: dict, key: str) -> bool:
    return str((annotations or {}).get(key, "")).lower() == "true"


def _member_status(status: dict, key: str) -> str:
    return ((status or {}).get(key) or {}).get("status") or "Unknown"


def _as_version(raw) -> int:
    """A rendered version as a number; agents report it as a decimal string ("" = none)."""
    try:
        return int(str(raw or "0"))
    except ValueError:
        return -1  # unparseable never equals a real version, so the device reads OutOfDate


def _member(status: str, info: str | None = None) -> dict:
    return {"status": status, "info": info} if info else {"status": status}


# -- the computation ------------------------------------------------------------------------


def compute_service_status(
    device,
    *,
    now: datetime.datetime,
    disconnected_after: float,
    fleet_template_version: str | None = None,
) -> dict:
    """The service-owned members of ``device.status`` (``summary``, ``updated``,
    ``applicationsSummary``, ``lifecycle``) as they should be at ``now``.

    ``device`` supplies ``status`` (the agent's latest report; its ``lifecycle`` is taken as
    the current one), ``annotations``, ``service_conditions``, ``last_seen``,
    ``rendered_version``, ``spec`` and ``owner``. ``fleet_template_version`` is the owning
    fleet's current TemplateVersion name (its ``fleet-controller/templateVersion`` annotation);
    it only matters for fleet-owned devices.
    """
    status = complete_status(device.status)
    annotations = device.annotations or {}
    never_seen = device.last_seen is None
    disconnected = never_seen or (
        device.last_seen + datetime.timedelta(seconds=disconnected_after) < now
    )
    away = MSG_NOT_REPORTED if never_seen else disconnected_info(disconnected_after)
    updating = find_condition(status.get("conditions"), "Updating")

    summary = _summary(status, annotations, disconnected, away, updating)
    return {
        "summary": summary,
        "updated": _updated(device, status, fleet_template_version, disconnected and not
                            never_seen, away, updating),
        "applicationsSummary": _applications(status, disconnected, away, summary["status"]),
        "lifecycle": _lifecycle(device, status),
    }


def _summary(status: dict, annotations: dict, disconnected: bool, away: str, updating) -> dict:
    if _flag(annotations, AWAITING_RECONNECT):
        return _member(Summary.AWAITING_RECONNECT, MSG_AWAITING_RECONNECT)
    if _flag(annotations, CONFLICT_PAUSED):
        return _member(Summary.CONFLICT_PAUSED, MSG_CONFLICT_PAUSED)
    if disconnected:
        return _member(Summary.UNKNOWN, away)
    if updating and updating.get("status") == "True" and updating.get("reason") == "Rebooting":
        return _member(Summary.REBOOTING, MSG_REBOOTING)
    resources = status.get("resources") or {}
    critical = [label for key, label in RESOURCES if resources.get(key) == ResourceStatus.CRITICAL]
    if critical:
        return _member(Summary.ERROR,
                       f"Device's system resources are critical: {', '.join(critical)}.")
    warning = [label for key, label in RESOURCES if resources.get(key) == ResourceStatus.WARNING]
    if warning:
        return _member(Summary.DEGRADED,
                       f"Device's system resources are degraded: {', '.join(warning)}.")
    return _member(Summary.ONLINE, MSG_HEALTHY)


def _spec_invalid_message(device, status: dict) -> str | None:
    """The message of a ``SpecValid=False`` condition (service-owned, else agent-reported)."""
    condition = find_condition(device.service_conditions, "SpecValid") or find_condition(
        status.get("conditions"), "SpecValid")
    if condition and condition.get("status") == "False":
        return condition.get("message") or "Device spec is invalid."
    return None


def _updated(device, status: dict, fleet_tv: str | None, disconnected: bool, away: str,
             updating) -> dict:
    if disconnected:
        return _member(Updated.UNKNOWN, away)
    if updating and updating.get("status") == "True":
        return _member(Updated.UPDATING,
                       updating.get("message") or "Device is updating to the latest device spec.")
    annotations = device.annotations or {}
    invalid = _spec_invalid_message(device, status)
    failure = None
    if updating and updating.get("reason") == "Error":
        failure = updating.get("message") or "update failed"
    at_rendered = (
        _as_version((status.get("config") or {}).get("renderedVersion"))
        == (device.rendered_version or 0)
    )
    if (device.owner or "").startswith(FLEET_OWNER_PREFIX):
        rendered_tv = annotations.get(RENDERED_TEMPLATE_VERSION) or ""
        if not invalid and at_rendered and rendered_tv == (fleet_tv or ""):
            result = _member(Updated.UP_TO_DATE,
                             "Device was updated to the fleet's latest device spec.")
        else:
            rollout_error = annotations.get(LAST_ROLLOUT_ERROR)
            if rollout_error:
                info = f"Device could not be updated to the fleet's latest spec: {rollout_error}"
            elif invalid:
                info = f"Device spec is invalid: {invalid}"
            elif failure:
                info = f"Device could not be updated to the fleet's latest spec: {failure}"
            elif (annotations.get(TEMPLATE_VERSION) or "") != (fleet_tv or ""):
                info = MSG_FLEET_NOT_SCHEDULED
            else:
                info = "Device has not yet been updated to the fleet's latest spec."
            result = _member(Updated.OUT_OF_DATE, info)
    elif not invalid and at_rendered:
        result = _member(Updated.UP_TO_DATE, "Device was updated to the latest device spec.")
    elif invalid:
        result = _member(Updated.OUT_OF_DATE, f"Device spec is invalid: {invalid}")
    elif failure:
        result = _member(Updated.OUT_OF_DATE,
                         f"Device could not be updated to the latest device spec: {failure}")
    else:
        result = _member(Updated.OUT_OF_DATE,
                         "Device has not yet been updated to the latest device spec.")
    if result["status"] == Updated.UP_TO_DATE:
        result = _os_override(device, status) or result
    return result


def _os_override(device, status: dict) -> dict | None:
    """An OS image the device does not run (or cannot run) makes it OutOfDate (§2.5)."""
    wanted = ((device.spec or {}).get("os") or {}).get("image")
    if not wanted:
        return None
    if (status.get("capabilities") or {}).get("osMode") == "package":
        return _member(Updated.OUT_OF_DATE, "OS target is not supported on package-mode devices.")
    running = (status.get("os") or {}).get("image")
    if running and running != wanted:
        return _member(Updated.OUT_OF_DATE,
                       f"Device runs OS image {running}, not the requested {wanted}.")
    return None


def _applications(status: dict, disconnected: bool, away: str, summary: str) -> dict:
    if disconnected:
        return _member(Apps.UNKNOWN, away)
    apps = [app for app in status.get("applications") or [] if isinstance(app, dict)]
    if summary == Summary.REBOOTING and apps:
        return _member(Apps.DEGRADED, MSG_REBOOTING)
    if not apps:
        return _member(Apps.NO_APPLICATIONS, MSG_NO_APPS)
    reported = status.get("applicationsSummary") or {}
    if reported.get("status") in (Apps.HEALTHY, Apps.DEGRADED, Apps.ERROR):
        return _member(reported["status"], reported.get("info"))
    # The agent gave no verdict: derive the one it would have given from the workloads.
    failed = [app.get("name", "") for app in apps if app.get("status") == "Error"]
    if failed:
        return _member(Apps.ERROR, f"Application workloads in error: {', '.join(failed)}.")
    pending = [app.get("name", "") for app in apps
               if app.get("status") not in ("Running", "Completed", "Stopped")]
    if pending:
        return _member(Apps.DEGRADED, f"Application workloads not ready: {', '.join(pending)}.")
    return _member(Apps.HEALTHY, MSG_APPS_HEALTHY)


def _lifecycle(device, status: dict) -> dict:
    current = status.get("lifecycle") or _member(Lifecycle.UNKNOWN)
    condition = find_condition(status.get("conditions"), "DeviceDecommissioning")
    reason = (condition or {}).get("reason")
    if reason == "Started":
        return _member(Lifecycle.DECOMMISSIONING, "Device has acknowledged decommissioning request")
    if reason == "Completed":
        return _member(Lifecycle.DECOMMISSIONED, "Device has completed decommissioning")
    if reason == "Error":
        return _member(Lifecycle.DECOMMISSIONED,
                       f"Device failed to decommission: {condition.get('message') or 'error'}")
    if (device.spec or {}).get("decommissioning") and current.get("status") not in (
        Lifecycle.DECOMMISSIONING, Lifecycle.DECOMMISSIONED,
    ):
        return _member(Lifecycle.DECOMMISSIONING, "Device has been requested to decommission.")
    return current


# -- transitions ----------------------------------------------------------------------------

Transition = tuple[str, str, str]  # (reason, event type, message)
_WARN, _NORMAL = EventType.WARNING.value, EventType.NORMAL.value
_RECONNECTING = (Summary.UNKNOWN, Summary.REBOOTING, Summary.AWAITING_RECONNECT,
                 Summary.POWERED_OFF)


def status_change_events(before: dict, after: dict) -> list[Transition]:
    """The events a status change is worth (service.md §1.7), as ``(reason, type, message)``.

    Only transitions count: a member that keeps its status emits nothing, so recomputing an
    unchanged device is silent. ``before``/``after`` are whole ``DeviceStatus`` objects.
    """
    events: list[Transition] = []
    events += _summary_events(before, after)
    events += _updated_events(before, after)
    events += _application_events(before, after)
    events += _resource_events(before, after)
    events += _os_events(before, after)
    events += _lifecycle_events(before, after)
    return events


def _info(status: dict, key: str, default: str) -> str:
    return ((status or {}).get(key) or {}).get("info") or default


def _summary_events(before: dict, after: dict) -> list[Transition]:
    old, new = _member_status(before, "summary"), _member_status(after, "summary")
    if old == new:
        return []
    if old == Summary.CONFLICT_PAUSED:
        return [("DeviceConflictResolved", _NORMAL, "Device conflict was resolved.")]
    if new == Summary.UNKNOWN:
        return [("DeviceDisconnected", _WARN, _info(after, "summary", "Device is disconnected."))]
    if new == Summary.REBOOTING:
        return [("DeviceIsRebooting", _NORMAL, MSG_REBOOTING)]
    if new == Summary.CONFLICT_PAUSED:
        return [("DeviceConflictPaused", _WARN, MSG_CONFLICT_PAUSED)]
    if new in (Summary.ONLINE, Summary.DEGRADED, Summary.ERROR) and old in _RECONNECTING:
        return [("DeviceConnected", _NORMAL, "Device is connected.")]
    return []


def _updated_events(before: dict, after: dict) -> list[Transition]:
    old, new = _member_status(before, "updated"), _member_status(after, "updated")
    if old == new:
        return []
    info = _info(after, "updated", "")
    if new == Updated.UPDATING:
        return [("DeviceContentUpdating", _NORMAL, info or "Device is updating.")]
    if new == Updated.UP_TO_DATE:
        return [("DeviceContentUpToDate", _NORMAL, info or "Device is up to date.")]
    if new == Updated.OUT_OF_DATE:
        updating = find_condition((after or {}).get("conditions"), "Updating")
        if updating and updating.get("reason") == "Error":
            return [("DeviceUpdateFailed", _WARN, info or "Device update failed.")]
        return [("DeviceContentOutOfDate", _NORMAL, info or "Device is out of date.")]
    return []


def _application_events(before: dict, after: dict) -> list[Transition]:
    old = _member_status(before, "applicationsSummary")
    new = _member_status(after, "applicationsSummary")
    if old == new:
        return []
    info = _info(after, "applicationsSummary", "")
    if new == Apps.ERROR:
        return [("DeviceApplicationError", _WARN, info or "Application workloads are in error.")]
    if new == Apps.DEGRADED:
        return [("DeviceApplicationDegraded", _WARN, info or "Application workloads are degraded.")]
    if new == Apps.HEALTHY or (new == Apps.NO_APPLICATIONS and old in (Apps.ERROR, Apps.DEGRADED)):
        return [("DeviceApplicationHealthy", _NORMAL, info or MSG_APPS_HEALTHY)]
    return []


def _resource_events(before: dict, after: dict) -> list[Transition]:
    # Only problems and recoveries from them: Unknown -> Healthy (a first report) is silent.
    events = []
    old_resources = (before or {}).get("resources") or {}
    new_resources = (after or {}).get("resources") or {}
    for key, label in RESOURCES:
        old, new = old_resources.get(key), new_resources.get(key)
        if old == new:
            continue
        if new == ResourceStatus.CRITICAL:
            events.append((f"Device{label}Critical", _WARN,
                           f"Device {label} utilization has reached a critical level."))
        elif new == ResourceStatus.WARNING:
            events.append((f"Device{label}Warning", _WARN,
                           f"Device {label} utilization has reached a warning level."))
        elif new == ResourceStatus.HEALTHY and old in (ResourceStatus.CRITICAL,
                                                       ResourceStatus.WARNING):
            events.append((f"Device{label}Normal", _NORMAL,
                           f"Device {label} utilization has returned to normal."))
    return events


def _os_events(before: dict, after: dict) -> list[Transition]:
    old = (before or {}).get("os") or {}
    new = (after or {}).get("os") or {}
    old_id = (old.get("image") or "", old.get("imageDigest") or "")
    new_id = (new.get("image") or "", new.get("imageDigest") or "")
    # The first report (nothing known before) is not a change of image.
    if not any(old_id) or not any(new_id) or old_id == new_id:
        return []
    shown = new_id[0] + (f"@{new_id[1]}" if new_id[1] else "")
    return [("DeviceOSImageChanged", _NORMAL, f"Device OS image changed to {shown}.")]


def _lifecycle_events(before: dict, after: dict) -> list[Transition]:
    old, new = _member_status(before, "lifecycle"), _member_status(after, "lifecycle")
    if old == new or new != Lifecycle.DECOMMISSIONED:
        return []
    condition = find_condition((after or {}).get("conditions"), "DeviceDecommissioning")
    if condition and condition.get("reason") == "Error":
        return [("DeviceDecommissionFailed", _WARN, _info(after, "lifecycle", "failed"))]
    return [("DeviceDecommissioned", _NORMAL, "Device has completed decommissioning.")]


# -- the database side ----------------------------------------------------------------------


def disconnected_timeout() -> float:
    return settings.FLIGHTCTL.disconnected_timeout_seconds


def with_fleet_template_version(queryset):
    """``queryset`` with ``fleet_template_version`` on each device (None if not fleet-owned)."""
    return queryset.annotate(fleet_template_version=owners.template_version_subquery())


def transition_events(device, before: dict, after: dict, *, actor: str,
                      component: str) -> list[Event]:
    """Unsaved :class:`Event` rows for the transitions of one device (for ``bulk_create``)."""
    return [
        Event(org_id=device.org_id, involved_kind="Device", involved_name=device.name,
              reason=reason, type=kind, message=message, actor=actor,
              source_component=component)
        for reason, kind, message in status_change_events(before, after)
    ]


_LOOK_UP = object()


def apply_service_status(device, status: dict, *, now=None, actor: str, component: str,
                         fleet_template_version=_LOOK_UP) -> dict:
    """Recompute the service members of ``status`` (the device's new status, already merged)
    for one locked device, record the transition events from its stored status, and return
    the status to store. The caller writes it (inside the same transaction)."""
    now = now or timezone.now()
    if fleet_template_version is _LOOK_UP:
        fleet_template_version = owners.template_version_of(device)
    before = complete_status(device.status)
    candidate = complete_status(status)
    probe = copy.copy(device)  # the row as it will be, without touching the caller's instance
    probe.status = candidate
    candidate.update(compute_service_status(
        probe, now=now, disconnected_after=disconnected_timeout(),
        fleet_template_version=fleet_template_version))
    events = transition_events(device, before, candidate, actor=actor, component=component)
    if events:
        Event.objects.bulk_create(events)
    return candidate


def refresh_devices(queryset, *, now=None, actor: str = WORKER_ACTOR,
                    component: str = WORKER_COMPONENT) -> int:
    """Recompute and store the service-side status of every device in ``queryset`` and record
    the transitions; return how many devices changed.

    Works in pages of :data:`PAGE_SIZE` ordered by id, each in its own transaction: one SELECT
    (rows locked, fleets' TemplateVersions joined in), one UPDATE for the rows that changed,
    one INSERT for their events. Locking keeps a concurrent agent report from being
    overwritten by a status computed from an older one.
    """
    now = now or timezone.now()
    timeout = disconnected_timeout()
    base = with_fleet_template_version(queryset).defer("rendered_spec").order_by("id")
    changed = 0
    last_id = 0
    while True:
        with transaction.atomic():
            page = list(base.filter(id__gt=last_id).select_for_update(of=("self",))[:PAGE_SIZE])
            if not page:
                break
            last_id = page[-1].id
            updates, events = [], []
            for device in page:
                before = complete_status(device.status)
                members = compute_service_status(
                    device, now=now, disconnected_after=timeout,
                    fleet_template_version=device.fleet_template_version)
                if all(before.get(key) == members[key] for key in SERVICE_MEMBERS):
                    continue
                updates.append((device.id, members))
                events += transition_events(device, before, {**before, **members},
                                            actor=actor, component=component)
            bulk.write_each([{"id": pk, "status_members": members} for pk, members in updates])
            if events:
                Event.objects.bulk_create(events)
            changed += len(updates)
        if len(page) < PAGE_SIZE:
            break
    return changed


def resume_devices(queryset, *, actor: str) -> int:
    """Lift the conflict pause of the paused devices in ``queryset`` (rows locked): one UPDATE
    drops the annotation, their service members are recomputed (``DeviceConflictResolved``
    recorded) and they are rendered again. Returns how many devices were paused."""
    rows = list(queryset.filter(annotations__contains={CONFLICT_PAUSED: "true"})
                .select_for_update(of=("self",)).order_by("id").values_list("id", "org_id"))
    if not rows:
        return 0
    ids = [pk for pk, _ in rows]
    bulk.remove_annotation(Device.objects.filter(pk__in=ids), CONFLICT_PAUSED)
    refresh_devices(Device.objects.filter(pk__in=ids), actor=actor, component=API_COMPONENT)
    by_org: dict = {}
    for pk, org_id in rows:
        by_org.setdefault(org_id, []).append(pk)
    for org_id, pks in by_org.items():
        request_renders(org_id, pks)  # what was held back while the device was paused
    return len(ids)


def connectivity_changed(now: datetime.datetime):
    """Devices whose connectivity no longer matches their summary (service.md §3.4): silent
    past the window but not yet Unknown, or seen within it but still Unknown. Answered from the
    (summary_status, last_seen) index; devices never seen have no last_seen and never match,
    and AwaitingReconnect/ConflictPaused devices are left to the restore flow."""
    cutoff = now - datetime.timedelta(seconds=disconnected_timeout())
    return Device.objects.filter(
        Q(summary_status__in=CONNECTED_SUMMARIES, last_seen__lt=cutoff)
        | Q(summary_status=Summary.UNKNOWN, last_seen__gte=cutoff)
    )


def check_connectivity(now: datetime.datetime | None = None) -> int:
    """The periodic ``device-connection`` job: refresh devices whose connectivity changed,
    across all organizations. Returns how many devices changed."""
    now = now or timezone.now()
    return refresh_devices(connectivity_changed(now), now=now)
