"""API representation and input checks of Device."""

from __future__ import annotations

from devices.status import complete_status
from devices.validation import validate_device_spec, validate_device_status
from flightctl.api.serializers import ResourceSerializer
from flightctl.api.validation import Errors


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
                "device-controller/renderedVersion": str(obj.rendered_version),
            }
        return meta

    def validate_spec(self, spec, errors: Errors, *, instance=None) -> None:
        validate_device_spec(spec, errors, "spec")

    def validate_status(self, status, errors: Errors) -> None:
        validate_device_status(status, errors, "status")
