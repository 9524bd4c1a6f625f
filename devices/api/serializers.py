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
        return complete_status(obj.status)

    def validate_spec(self, spec, errors: Errors, *, instance=None) -> None:
        validate_device_spec(spec, errors, "spec")

    def validate_status(self, status, errors: Errors) -> None:
        validate_device_status(status, errors, "status")
