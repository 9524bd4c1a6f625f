"""The Fleet API: CRUD and status from the shared resource endpoint, plus fleet rules."""

from __future__ import annotations

from django.db import transaction
from rest_framework.response import Response

from devices.lifecycle import fleet_application_action
from devices.summary import add_devices_summaries
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

    # -- device-side extras (devices app: devices/summary.py, devices/lifecycle.py) -----------

    def finalize_response(self, request, response, *args, **kwargs):
        """``addDevicesSummary=true`` on GET (list or one fleet): ``status.devicesSummary``
        over member devices, one grouped query for the whole page (api.md §4.4)."""
        if (getattr(self, "action", None) in ("list", "retrieve") and response.status_code == 200
                and request.query_params.get("addDevicesSummary", "").lower() == "true"):
            items = response.data["items"] if self.action == "list" else [response.data]
            add_devices_summaries(self.org_id, items)
        return super().finalize_response(request, response, *args, **kwargs)

    def application_action(self, request, name: str, appname: str, action: str):
        """``POST /fleets/{name}/applications/{appname}/actions/{stop|start}``."""
        with transaction.atomic():
            fleet = self.get_object(name, lock=True)
            fleet_application_action(fleet, appname, action, actor=self.actor)
        return Response(self.represent(fleet))
