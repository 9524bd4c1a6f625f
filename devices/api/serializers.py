"""API representation and input checks of Device."""

from __future__ import annotations

from devices.console.sessions import listed_sessions
from devices.models import Device
from devices.status import complete_status
from devices.validation import validate_device_spec, validate_device_status
from flightctl.api.annotations import RENDERED_VERSION
from flightctl.api.errors import API_VERSION
from flightctl.api.serializers import ResourceSerializer
from flightctl.api.validation import Errors
from flightctl.compiled import CompiledLookup


class DeviceSerializer(ResourceSerializer):
    """Envelope: metadata, spec (optional), status (always complete; ``lastSeen`` never)."""

    kind = "Device"
    spec_required = False
    status_required = True

    def spec_representation(self, obj) -> dict:
        return obj.spec or {}

    def status_representation(self, obj) -> dict:
        status = complete_status(obj.status)
        if obj.service_conditions:
            own = {c.get("type") for c in obj.service_conditions}
            status["conditions"] = [
                c for c in status.get("conditions") or [] if c.get("type") not in own
            ] + list(obj.service_conditions)
        return status

    def metadata(self, obj) -> dict:
        meta = super().metadata(obj)
        if obj.rendered_version:
            meta["annotations"] = {
                **meta.get("annotations", {}),
                RENDERED_VERSION: str(obj.rendered_version),
            }
        return meta

    def validate_spec(self, spec, errors: Errors, *, instance=None) -> None:
        validate_device_spec(spec, errors, "spec")

    def validate_status(self, status, errors: Errors) -> None:
        validate_device_status(status, errors, "status")


def rendered_device_body(device: Device) -> dict:
    """The Device as ``GET /devices/{name}/rendered`` returns it to its agent."""
    body = DeviceSerializer().to_representation(device)
    body["apiVersion"] = API_VERSION
    body["spec"] = dict(device.rendered_spec or {})
    sessions = listed_sessions(device.annotations)
    if sessions:  # the console sessions waiting for the agent (devices.console)
        body["spec"]["consoles"] = sessions
    return body


#: a device as its agent's ``GET /rendered`` loads it
_FOR_RENDERED = CompiledLookup(lambda org_id, name: Device.objects.restrict(org_id).filter(
    name=name))


def load_rendered_body(org_id, name: str) -> dict | None:
    """:func:`rendered_device_body` of the named device, or None if there is none."""
    device = _FOR_RENDERED.first(org_id, name)
    return None if device is None else rendered_device_body(device)
