"""What a Device or Fleet write through the API sets in motion (enqueued in its transaction)."""

from __future__ import annotations

from flightctl.api.resources import on_delete, on_write
from flightctl.tasks import enqueue


def _payload(obj) -> dict:
    return {"org_id": str(obj.org_id), "name": obj.name, "kind": type(obj).__name__}


@on_write("Fleet")
def fleet_written(fleet, *, created: bool, changed: list[str]) -> None:
    if created or "spec.selector" in changed:
        enqueue("fleet-selector", _payload(fleet))
    if created or "spec.template" in changed:
        enqueue("fleet-validate", _payload(fleet))
    elif "spec" in changed:  # the rollout policy changed: re-evaluate the rollout now
        enqueue("fleet-progress", _payload(fleet))


@on_delete("Fleet")
def fleet_deleted(fleet) -> None:
    enqueue("fleet-selector", _payload(fleet))


@on_write("Device")
def device_written(device, *, created: bool, changed: list[str]) -> None:
    if created or "labels" in changed:
        # Flagged in the write's transaction: the adoption pass (fleets.tasks.adopt_pending)
        # takes flagged devices in pages, and also gives a new device its first render.
        if not device.owner_pending:  # an approval creates its device already flagged
            type(device).objects.filter(pk=device.pk).update(owner_pending=True)
        enqueue("device-owner", _payload(device))
    if "spec" in changed and not created and not (device.owner or "").startswith("Fleet/"):
        enqueue("device-render", _payload(device))
