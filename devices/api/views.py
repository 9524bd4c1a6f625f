"""The Device API: CRUD and status from the shared resource endpoint, plus device rules."""

from __future__ import annotations

import re

from django.db import transaction
from rest_framework.response import Response

from devices import lifecycle
from devices.api.serializers import DeviceSerializer
from devices.filtersets import DEVICE_FIELDS
from devices.health import apply_service_status
from devices.models import Device
from devices.status import complete_status, initial_status
from devices.summary import summarize_queryset, summarize_rows
from flightctl.api.errors import bad_request, conflict
from flightctl.api.resources import ResourceViewSet
from flightctl.api.serializers import Incoming, timestamp

CVE_RE = re.compile(r"^CVE-[0-9]{4}-[0-9]{4,}$")
MSG_DECOMMISSIONED = "decommissioned device cannot be created or updated"
MSG_CONSOLES = "consoles are not supported through this api"


class DeviceViewSet(ResourceViewSet):
    """Devices. Owned (fleet) devices keep their spec; decommissioned ones are frozen."""

    model = Device
    serializer = DeviceSerializer()
    selectable_fields = DEVICE_FIELDS

    def initial_status(self) -> dict:
        return initial_status()

    def check_create(self, incoming: Incoming) -> None:
        spec = incoming.spec or {}
        if spec.get("consoles"):
            raise bad_request(MSG_CONSOLES)
        if spec.get("decommissioning"):
            raise bad_request("spec.decommissioning: Forbidden: may only be set by "
                              "PUT /api/v1/devices/{name}/decommission")

    def check_update(self, instance, incoming: Incoming, *, patch: bool) -> None:
        spec = incoming.spec or {}
        if spec.get("consoles"):
            raise bad_request(MSG_CONSOLES)
        if (instance.spec or {}).get("decommissioning"):
            raise conflict(MSG_DECOMMISSIONED)
        if spec.get("decommissioning"):
            raise bad_request("spec.decommissioning: Forbidden: may only be set by "
                              "PUT /api/v1/devices/{name}/decommission")
        super().check_update(instance, incoming, patch=patch)

    def list(self, request):
        params = request.query_params
        cve = params.get("cveId")
        if cve and not CVE_RE.match(cve):
            raise bad_request(f"API Error: invalid cveId {cve!r}")
        if params.get("summaryOnly", "").lower() == "true":
            if params.get("limit") or params.get("continue"):
                raise bad_request("parameters such as 'limit', and 'continue' are not supported "
                                  "when 'summaryOnly' is true")
            summary = summarize_queryset(self.filtered_queryset(request))
            return Response({
                "apiVersion": "flightctl.io/v1beta1",
                "kind": "DeviceList",
                "metadata": {},
                "items": [],
                "summary": summary,
            })
        return super().list(request)

    def list_extras(self, queryset, rows, request) -> dict:
        return {"summary": summarize_rows(rows)}

    def lastseen(self, request, name: str):
        device = self.get_object(name)
        if device.last_seen is None:
            return Response(status=204)
        return Response({"lastSeen": timestamp(device.last_seen)})

    def merge_status(self, obj, status: dict) -> dict:
        """A user's status write: the members the service owns are recomputed (and their
        transitions recorded) as for an agent report, but ``last_seen`` is not refreshed:
        only the device itself proves it is alive (api.md §1, status subresource)."""
        new = complete_status(status)
        new.pop("lastSeen", None)
        new["lifecycle"] = complete_status(obj.status)["lifecycle"]
        return apply_service_status(obj, new, actor=self.actor, component="flightctl-api")

    def decommission(self, request, name: str):
        """``PUT /devices/{name}/decommission``: schedule the device for decommissioning."""
        target = lifecycle.parse_decommission(request.data)
        with transaction.atomic():
            device = self.get_object(name, lock=True)
            lifecycle.decommission_device(device, target, actor=self.actor)
        return Response(self.represent(device))

    def application_action(self, request, name: str, appname: str, action: str):
        """``POST /devices/{name}/applications/{appname}/actions/{stop|start|restart}``."""
        with transaction.atomic():
            device = self.get_object(name, lock=True)
            lifecycle.device_application_action(device, appname, action, actor=self.actor)
        return Response(self.represent(device))
