"""The Device API: CRUD and status from the shared resource endpoint, plus device rules."""

from __future__ import annotations

import re

from django.db import transaction
from django.db.models import TextField, Value
from django.db.models.functions import Concat
from rest_framework.response import Response

from devices import lifecycle
from devices.api.serializers import DeviceSerializer, rendered_device_body
from devices.filtersets import DEVICE_FIELDS, LABEL_FIELDS
from devices.health import apply_service_status, resume_devices
from devices.models import Device, DeviceLabel
from devices.status import complete_status, initial_status
from devices.summary import summarize_queryset, summarize_rows
from flightctl.api.errors import ApiError, bad_request, conflict
from flightctl.api.events import API_COMPONENT
from flightctl.api.paging import parse_limit
from flightctl.api.resources import ResourceViewSet
from flightctl.api.serializers import Incoming, timestamp
from flightctl.api.validation import Errors

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

    def rendered(self, request, name: str):
        """``GET /devices/{name}/rendered`` for users and tools: what the device's agent gets.

        The agent API's long-poll is not repeated here (the user API's threads are few): a
        ``knownRenderedVersion`` equal to the current one answers 204 at once."""
        raw = request.query_params.get("knownRenderedVersion", "")
        try:
            known = int(raw) if raw != "" else None
        except ValueError:
            raise bad_request(f"invalid knownRenderedVersion {raw!r}: must be an integer")
        device = self.get_object(name)
        if not device.rendered_version:
            raise ApiError(409, "no rendered version for device")
        if known == device.rendered_version:
            return Response(status=204)
        return Response(rendered_device_body(device))

    def labels(self, request):
        """``GET /labels?kind=Device``: the distinct ``key=value`` labels of the devices the
        selectors pick, sorted, at most ``limit`` (1,000 at most; one query)."""
        params = request.query_params
        if params.get("kind") != "Device":
            errors = Errors()
            if params.get("kind"):
                errors.unsupported("kind", params["kind"], ["Device"])
            else:
                errors.required("kind")
            raise bad_request("\n".join(errors))
        limit = parse_limit(params.get("limit"))
        rows = self.selected(DeviceLabel.objects.filter(org_id=self.org_id),
                             params.get("labelSelector"), params.get("fieldSelector"),
                             fields=LABEL_FIELDS, label_column="device_labels")
        pairs = (rows.annotate(label=Concat("key", Value("="), "value", output_field=TextField()))
                 .values_list("label", flat=True).distinct().order_by("label")[:limit])
        return Response(list(pairs))

    def resume(self, request):
        """``POST /deviceactions/resume``: lift the conflict pause (after a restore) of the
        devices the selectors pick; ``{"resumedDevices": N}``."""
        body = request.data
        errors = Errors()
        if not isinstance(body, dict):
            raise bad_request("request body: Invalid value: must be an object")
        for key in body:
            if key not in ("labelSelector", "fieldSelector"):
                errors.invalid(key, key, f'unknown field "{key}"')
            elif not isinstance(body[key], str):
                errors.invalid(key, body[key], "must be a string")
        if not errors and not ("labelSelector" in body or "fieldSelector" in body):
            errors.required("labelSelector", "at least one of labelSelector and fieldSelector "
                            "must be provided")
        if errors:
            raise bad_request("\n".join(errors))
        devices = self.selected(self.get_queryset(), body.get("labelSelector"),
                                body.get("fieldSelector"))
        with transaction.atomic():
            resumed = resume_devices(devices, actor=self.actor)
        return Response({"resumedDevices": resumed})

    def merge_status(self, obj, status: dict) -> dict:
        """A user's status write: the members the service owns are recomputed (and their
        transitions recorded) as for an agent report, but ``last_seen`` is not refreshed:
        only the device itself proves it is alive (api.md §1, status subresource)."""
        new = complete_status(status)
        new.pop("lastSeen", None)
        new["lifecycle"] = complete_status(obj.status)["lifecycle"]
        return apply_service_status(obj, new, actor=self.actor, component=API_COMPONENT)

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
