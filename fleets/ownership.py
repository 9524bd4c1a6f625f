"""Fleet membership: which fleet owns each device.

A device matched by exactly one fleet's selector is owned by it (``owner: Fleet/<name>``). A
device matched by several keeps its current owner and carries the ``MultipleOwners``
condition listing them (sorted, comma-separated; the message doubles as the change detector),
until the ambiguity is resolved. A device matched by none has no owner. Devices owned by
something other than a fleet, and devices being decommissioned, are left alone.

Recomputation is set-based: one query per fleet of the organization (fleets are few, devices
many) to find matches, one UPDATE for every changed device, one bulk insert for the events.
"""

from __future__ import annotations

import copy

from devices import bulk
from devices.models import Device
from fleets.models import Fleet
from flightctl.api.conditions import find_condition, update_conditions
from flightctl.api.events import WORKER_ACTOR, WORKER_COMPONENT
from flightctl.api.selectors import label_selector_object_q
from flightctl.models import Event

MULTIPLE_OWNERS = "MultipleOwners"


def recompute_owners(org_id, devices) -> list[tuple[Device, str | None, str | None]]:
    """Recompute the owners of ``devices`` (a Device queryset of one organization).

    Returns ``(device, old_owner, new_owner)`` for every device whose owner changed.
    """
    devices = devices.filter(org_id=org_id)
    matches: dict[int, list[str]] = {}
    for fleet in Fleet.objects.restrict(org_id).only("name", "spec"):
        q = label_selector_object_q((fleet.spec or {}).get("selector"))
        if q is None:
            continue
        for device_id in devices.filter(q).values_list("id", flat=True):
            matches.setdefault(device_id, []).append(fleet.name)

    owner_changes, updates, events = [], [], []
    for device in devices.only("id", "org_id", "name", "owner", "spec", "service_conditions",
                               "labels", "annotations"):
        if device.owner and not device.owner.startswith("Fleet/"):
            continue
        if (device.spec or {}).get("decommissioning"):
            continue
        fleets = sorted(matches.get(device.pk, []))
        old_owner = device.owner or None
        if len(fleets) == 1:
            new_owner = f"Fleet/{fleets[0]}"
        elif not fleets:
            new_owner = None
        else:
            new_owner = old_owner
        conditions = copy.deepcopy(device.service_conditions or [])
        previous = find_condition(device.service_conditions, MULTIPLE_OWNERS)
        ambiguous = fleets if len(fleets) > 1 else []
        if (ambiguous or previous) and not (
                previous and previous.get("message") == ",".join(ambiguous)):
            update_conditions(conditions, MULTIPLE_OWNERS, bool(ambiguous),
                              MULTIPLE_OWNERS if ambiguous else "SingleOwner",
                              ",".join(ambiguous))
            events.append(_ownership_event(device, ambiguous, previous, new_owner))
        if new_owner == old_owner and conditions == (device.service_conditions or []):
            continue
        if new_owner != old_owner:
            owner_changes.append((device, old_owner, new_owner))
            events.append(Event(
                org_id=org_id, involved_kind="Device", involved_name=device.name,
                reason="ResourceUpdated", message="Device was updated successfully.",
                actor=WORKER_ACTOR, source_component=WORKER_COMPONENT,
                details={"detailType": "ResourceUpdated", "updatedFields": ["owner"],
                         "previousOwner": old_owner or "", "newOwner": new_owner or ""}))
        device.owner, device.service_conditions = new_owner, conditions
        updates.append({"id": device.pk, "owner": new_owner, "service_conditions": conditions})

    # One statement for every changed device: ownership moves in bulk when a fleet's selector
    # changes.
    bulk.write_each(updates)
    Event.objects.bulk_create(events)
    return owner_changes


def _ownership_event(device, ambiguous, previous, new_owner) -> Event:
    if ambiguous:
        return Event(
            org_id=device.org_id, involved_kind="Device", involved_name=device.name,
            reason="DeviceMultipleOwnersDetected", type="Warning", actor=WORKER_ACTOR,
            source_component=WORKER_COMPONENT,
            message=f"Device matches multiple fleets: {', '.join(ambiguous)}.",
            details={"detailType": "DeviceMultipleOwnersDetected", "matchingFleets": ambiguous})
    resolution = "SingleMatch" if new_owner else "NoMatch"
    return Event(
        org_id=device.org_id, involved_kind="Device", involved_name=device.name,
        reason="DeviceMultipleOwnersResolved", actor=WORKER_ACTOR,
        source_component=WORKER_COMPONENT,
        message="Device multiple owners conflict was resolved.",
        details={"detailType": "DeviceMultipleOwnersResolved", "resolutionType": resolution,
                 "assignedOwner": new_owner or "",
                 "previousMatchingFleets": (previous.get("message") or "").split(",")})
