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

import json
from datetime import UTC, datetime

from django.db import connection

from devices.models import Device
from fleets.models import Fleet
from fleets.selection import label_selector_q
from flightctl.models import Event

MULTIPLE_OWNERS = "MultipleOwners"
ACTOR = "service:flightctl-worker"


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _multiple_owners_condition(fleets: list[str]) -> dict:
    return {"type": MULTIPLE_OWNERS, "status": "True" if fleets else "False",
            "reason": MULTIPLE_OWNERS if fleets else "SingleOwner",
            "message": ",".join(fleets), "lastTransitionTime": _now_text()}


def recompute_owners(org_id, devices) -> list[tuple[Device, str | None, str | None]]:
    """Recompute the owners of ``devices`` (a Device queryset of one organization).

    Returns ``(device, old_owner, new_owner)`` for every device whose owner changed.
    """
    devices = devices.filter(org_id=org_id)
    matches: dict[int, list[str]] = {}
    for fleet in Fleet.objects.restrict(org_id).only("name", "spec"):
        q = label_selector_q((fleet.spec or {}).get("selector"))
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
        conditions = [c for c in device.service_conditions or []
                      if c.get("type") != MULTIPLE_OWNERS]
        previous = next((c for c in device.service_conditions or []
                         if c.get("type") == MULTIPLE_OWNERS), None)
        ambiguous = fleets if len(fleets) > 1 else []
        if ambiguous or previous:
            if previous and previous.get("message") == ",".join(ambiguous):
                conditions.append(previous)
            else:
                conditions.append(_multiple_owners_condition(ambiguous))
                events.append(_ownership_event(device, ambiguous, previous, new_owner))
        if new_owner == old_owner and conditions == (device.service_conditions or []):
            continue
        if new_owner != old_owner:
            owner_changes.append((device, old_owner, new_owner))
            events.append(Event(
                org_id=org_id, involved_kind="Device", involved_name=device.name,
                reason="ResourceUpdated", message="Device was updated successfully.",
                actor=ACTOR, source_component="flightctl-worker",
                details={"detailType": "ResourceUpdated", "updatedFields": ["owner"],
                         "previousOwner": old_owner or "", "newOwner": new_owner or ""}))
        device.owner, device.service_conditions = new_owner, conditions
        updates.append((device.pk, new_owner, json.dumps(conditions)))

    if updates:
        with connection.cursor() as cursor:
            # One statement for every changed device (ownership moves in bulk when a fleet's
            # selector changes); the ORM would issue one UPDATE per row.
            cursor.execute(
                """
                UPDATE devices_device AS d SET owner = v.owner,
                    service_conditions = v.conditions::jsonb,
                    resource_version = d.resource_version + 1
                FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v(id, owner, conditions)
                WHERE d.id = v.id
                """,
                [list(column) for column in zip(*updates, strict=True)],
            )
    Event.objects.bulk_create(events)
    return owner_changes


def _ownership_event(device, ambiguous, previous, new_owner) -> Event:
    if ambiguous:
        return Event(
            org_id=device.org_id, involved_kind="Device", involved_name=device.name,
            reason="DeviceMultipleOwnersDetected", type="Warning", actor=ACTOR,
            source_component="flightctl-worker",
            message=f"Device matches multiple fleets: {', '.join(ambiguous)}.",
            details={"detailType": "DeviceMultipleOwnersDetected", "matchingFleets": ambiguous})
    resolution = "SingleMatch" if new_owner else "NoMatch"
    return Event(
        org_id=device.org_id, involved_kind="Device", involved_name=device.name,
        reason="DeviceMultipleOwnersResolved", actor=ACTOR, source_component="flightctl-worker",
        message="Device multiple owners conflict was resolved.",
        details={"detailType": "DeviceMultipleOwnersResolved", "resolutionType": resolution,
                 "assignedOwner": new_owner or "",
                 "previousMatchingFleets": (previous.get("message") or "").split(",")})
