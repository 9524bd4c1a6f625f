"""What device changes set in motion: renders, enqueued in the transaction of the change
(so a render happens if and only if the change commits; handlers in devices.tasks)."""

from __future__ import annotations

from devices.owners import fleet_name
from flightctl.api.resources import on_write
from flightctl.tasks import enqueue, enqueue_once

RENDER_BATCH = 1000  # devices per device-render-batch task


def request_render(device) -> None:
    """Ask for ``device`` to be rendered again (its spec or its lifecycle overlays changed)."""
    enqueue("device-render", _payload(device))


def request_renders(org_id, ids: list[int]) -> None:
    """Ask for many devices of one organization to be rendered again: one task per
    :data:`RENDER_BATCH` devices rather than one per device."""
    for start in range(0, len(ids), RENDER_BATCH):
        enqueue("device-render-batch", {"org_id": str(org_id),
                                        "ids": ids[start:start + RENDER_BATCH]})


def request_fleet_render(fleet) -> None:
    """Ask for every device owned by ``fleet`` to be rendered again (its fleet-level
    application lifecycle changed); one task renders them page by page (fleets.tasks)."""
    enqueue("fleet-render", {"org_id": str(fleet.org_id), "name": fleet.name,
                             "kind": "Fleet"})


def _payload(device) -> dict:
    return {"org_id": str(device.org_id), "name": device.name, "kind": "Device"}


@on_write("Device")
def device_written(device, *, created: bool, changed: list[str]) -> None:
    if created or "labels" in changed:
        # Flagged in the write's transaction: the adoption pass (devices.owners) takes
        # flagged devices in pages, and also gives a new device its first render.
        if not device.owner_pending:  # an approval creates its device already flagged
            type(device).objects.filter(pk=device.pk).update(owner_pending=True)
        # One pass adopts every flagged device of the organization, so one task is queued
        # per organization at a time, not one per device (flightctl.tasks.enqueue_once).
        enqueue_once("device-owner", str(device.org_id), {"org_id": str(device.org_id)})
    # A fleet member's spec is the fleet's to render.
    if "spec" in changed and not created and fleet_name(device) is None:
        request_render(device)
