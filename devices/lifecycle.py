"""Device lifecycle operations users request: decommissioning a device, and stopping,
starting or restarting one application on a device or across a fleet (api.md §2.1).

**Application lifecycle overrides** are not part of any spec. A device action records the
application's ``desiredState`` (``running``/``stopped``) or bumps its ``restartGeneration``
in the device annotation ``device-controller/applicationLifecycle``; a fleet action records a
``desiredState`` default in the fleet annotation ``fleet-controller/applicationLifecycle``,
which every member (present and future) inherits. Both are JSON objects keyed by application
name. The renderer bakes them into the rendered applications with
:func:`overlay_applications`, so they survive template rollouts. When a device and its fleet
both set a state for an application, the action issued last wins (each entry carries
``updatedAt``), which is the reference's rule; an entry without ``updatedAt`` counts as older
than any that has one, except that a device entry then still beats a fleet entry that has
none either.

**Decommissioning** (state machine of ``status.lifecycle.status``)::

    Enrolled --PUT /decommission--> Decommissioning --agent condition DeviceDecommissioning
        (reason Completed or Error)--> Decommissioned

The API call sets ``spec.decommissioning``, clears owner and labels (the device leaves its
fleet), leaves ``generation`` alone, and may happen once; the agent's progress is read by
:mod:`devices.health`.
"""

from __future__ import annotations

import json

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from devices.choices import DeviceLifecycleStatus
from devices.health import apply_service_status
from devices.hooks import request_fleet_render, request_render
from devices.status import complete_status
from flightctl.api.annotations import (
    AWAITING_RECONNECT,
    CONFLICT_PAUSED,
    DEVICE_LIFECYCLE,
    FLEET_LIFECYCLE,
)
from flightctl.api.errors import ApiError, bad_request, conflict
from flightctl.api.events import API_COMPONENT, record_event
from flightctl.api.serializers import timestamp

DECOMMISSION_TARGETS = ("Unenroll", "FactoryReset")
DEVICE_ACTIONS = ("stop", "start", "restart")
FLEET_ACTIONS = ("stop", "start")
_STATE_OF = {"stop": "stopped", "start": "running"}

MSG_ALREADY_DECOMMISSIONING = "device already has decommissioning requested"
MSG_BAD_DECOMMISSION = (
    'failed to decode request body: target must be one of "Unenroll", "FactoryReset"'
)


def application_not_found(appname: str) -> ApiError:
    return ApiError(404, f'Application of name "{appname}" not found')


# -- overrides ------------------------------------------------------------------------------


def read_overrides(annotations: dict | None, key: str) -> dict:
    """The lifecycle entries stored under ``key`` (``{}`` when absent or unreadable)."""
    raw = (annotations or {}).get(key)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}  # a hand-edited annotation must not break rendering
    return {k: v for k, v in value.items() if isinstance(v, dict)} if isinstance(
        value, dict) else {}


def _when(entry: dict):
    return parse_datetime(entry.get("updatedAt") or "") if entry.get("updatedAt") else None


def _desired_state(device_entry: dict, fleet_entry: dict) -> str | None:
    mine = device_entry.get("desiredState")
    fleets = fleet_entry.get("desiredState")
    mine = mine if mine in ("running", "stopped") else None
    fleets = fleets if fleets in ("running", "stopped") else None
    if mine and fleets:
        mine_at, fleet_at = _when(device_entry), _when(fleet_entry)
        if fleet_at and (mine_at is None or fleet_at > mine_at):
            return fleets
        return mine
    return mine or fleets


def overlay_applications(apps: list, device_annotations: dict, fleet_annotations: dict) -> list:
    """``apps`` (rendered application specs) with lifecycle overrides applied: copies of the
    entries with ``desiredState`` / ``restartGeneration`` set where an override exists. Called
    by the renderer; ``fleet_annotations`` is ``{}`` for a standalone device."""
    device_entries = read_overrides(device_annotations, DEVICE_LIFECYCLE)
    fleet_entries = read_overrides(fleet_annotations, FLEET_LIFECYCLE)
    if not device_entries and not fleet_entries:
        return list(apps)
    result = []
    for app in apps:
        name = app.get("name") if isinstance(app, dict) else None
        mine, fleets = device_entries.get(name) or {}, fleet_entries.get(name) or {}
        if not name or not (mine or fleets):
            result.append(app)
            continue
        app = dict(app)
        state = _desired_state(mine, fleets)
        if state:
            app["desiredState"] = state
        generation = mine.get("restartGeneration")
        if isinstance(generation, int) and generation > 0:
            app["restartGeneration"] = generation
        result.append(app)
    return result


def _updated_entries(annotations: dict, key: str, appname: str, action: str) -> str:
    entries = read_overrides(annotations, key)
    entry = dict(entries.get(appname) or {})
    if action == "restart":
        # Restarting does not re-assert the desired state, so it leaves updatedAt alone: a
        # later fleet stop still wins over an earlier device start.
        entry["restartGeneration"] = int(entry.get("restartGeneration") or 0) + 1
    else:
        entry["desiredState"] = _STATE_OF[action]
        entry["updatedAt"] = timestamp(timezone.now())
    entries[appname] = entry
    return json.dumps(entries, sort_keys=True, separators=(",", ":"))


def _app_names(spec: dict | None) -> set[str]:
    return {
        app.get("name") for app in (spec or {}).get("applications") or []
        if isinstance(app, dict) and app.get("name")
    }


def is_decommissioned(device) -> bool:
    lifecycle = complete_status(device.status)["lifecycle"].get("status")
    return bool((device.spec or {}).get("decommissioning")) or lifecycle in (
        DeviceLifecycleStatus.DECOMMISSIONING, DeviceLifecycleStatus.DECOMMISSIONED)


def _lifecycle_event(org_id, kind: str, name: str, appname: str, action: str, actor: str):
    record_event(
        org_id, kind, name, "ApplicationLifecycleChanged",
        f'Application "{appname}" {action} requested.', actor=actor,
        details={"detailType": "ApplicationLifecycleChanged", "appName": appname,
                 "action": action},
    )


def device_application_action(device, appname: str, action: str, *, actor: str) -> None:
    """Stop, start or restart one application of a device (row locked by the caller)."""
    if is_decommissioned(device):
        raise bad_request("cannot change the applications of a decommissioned device")
    annotations = device.annotations or {}
    if str(annotations.get(AWAITING_RECONNECT, "")).lower() == "true" or str(
            annotations.get(CONFLICT_PAUSED, "")).lower() == "true":
        raise bad_request("cannot change the applications of a device awaiting reconnection "
                          "or paused on a conflict")
    # The spec names the applications; the rendered spec is checked too because a fleet
    # member's applications reach it through rendering.
    if appname not in _app_names(device.spec) | _app_names(device.rendered_spec):
        raise application_not_found(appname)
    device.annotations = {
        **annotations,
        DEVICE_LIFECYCLE: _updated_entries(annotations, DEVICE_LIFECYCLE, appname, action),
    }
    device.resource_version += 1
    device.save(update_fields=["annotations", "resource_version", "updated_at"])
    _lifecycle_event(device.org_id, "Device", device.name, appname, action, actor)
    request_render(device)


def fleet_application_action(fleet, appname: str, action: str, *, actor: str) -> None:
    """Stop or start one application on every member of a fleet (row locked by the caller)."""
    template_spec = ((fleet.spec or {}).get("template") or {}).get("spec")
    if appname not in _app_names(template_spec):
        raise application_not_found(appname)
    annotations = fleet.annotations or {}
    fleet.annotations = {
        **annotations,
        FLEET_LIFECYCLE: _updated_entries(annotations, FLEET_LIFECYCLE, appname, action),
    }
    fleet.resource_version += 1
    fleet.save(update_fields=["annotations", "resource_version", "updated_at"])
    _lifecycle_event(fleet.org_id, "Fleet", fleet.name, appname, action, actor)
    request_fleet_render(fleet)


# -- decommissioning ------------------------------------------------------------------------


def parse_decommission(body) -> str:
    """The target of a ``DeviceDecommission`` body, or a 400."""
    if not isinstance(body, dict):
        raise bad_request("failed to decode request body")
    target = body.get("target")
    if target not in DECOMMISSION_TARGETS:
        raise bad_request(MSG_BAD_DECOMMISSION)
    return target


def decommission_device(device, target: str, *, actor: str) -> None:
    """Schedule ``device`` (row locked by the caller) for decommissioning."""
    if (device.spec or {}).get("decommissioning"):
        raise conflict(MSG_ALREADY_DECOMMISSIONING)
    # Not a spec edit by the user: generation stays, so fleets and rollouts do not count it.
    device.spec = {**(device.spec or {}), "decommissioning": {"target": target}}
    device.owner = None
    device.labels = {}
    status = complete_status(device.status)
    status["lifecycle"] = {"status": DeviceLifecycleStatus.DECOMMISSIONING,
                           "info": "Device has been requested to decommission."}
    device.status = apply_service_status(device, status, actor=actor, component=API_COMPONENT)
    device.resource_version += 1
    device.save(update_fields=["spec", "owner", "labels", "status", "resource_version",
                               "updated_at"])
    record_event(device.org_id, "Device", device.name, "DeviceDecommissioned",
                 f"Device decommissioning requested (target {target}).", actor=actor)
    request_render(device)
