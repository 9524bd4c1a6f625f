"""The Fleet API: CRUD and status from the shared resource endpoint, plus fleet rules."""

from __future__ import annotations

from fleets.api.serializers import FleetSerializer
from fleets.filtersets import FLEET_FIELDS
from fleets.models import Fleet
from flightctl.api.errors import MSG_OWNER_DELETE, MSG_OWNER_UPDATE, conflict
from flightctl.api.resources import ResourceViewSet
from flightctl.api.serializers import Incoming


class FleetViewSet(ResourceViewSet):
    """Fleets. A fleet owned by a ResourceSync is edited through git only."""

    model = Fleet
    serializer = FleetSerializer()
    selectable_fields = FLEET_FIELDS

    def initial_status(self) -> dict:
        return {"conditions": []}

    def check_update(self, instance, incoming: Incoming, *, patch: bool) -> None:
        labels_changed = incoming.labels is not None and incoming.labels != instance.labels
        if instance.owner and labels_changed:
            raise conflict(MSG_OWNER_UPDATE)
        super().check_update(instance, incoming, patch=patch)

    def check_delete(self, instance) -> None:
        if instance.owner:
            raise conflict(MSG_OWNER_DELETE)

    def spec_changes(self, old: dict, new: dict) -> list[str]:
        # Events name which part of a fleet changed: selector changes re-match devices,
        # template changes create a TemplateVersion.
        changed = [
            f"spec.{part}" for part in ("selector", "template") if old.get(part) != new.get(part)
        ]
        return changed or ["spec"]
