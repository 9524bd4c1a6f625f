"""API representation and input checks of Fleet."""

from __future__ import annotations

from fleets.validation import validate_fleet_spec
from flightctl.api.serializers import ResourceSerializer
from flightctl.api.validation import Errors


class FleetSerializer(ResourceSerializer):
    """Envelope: metadata, spec (required: template), status (conditions always present)."""

    kind = "Fleet"

    def status_representation(self, obj) -> dict:
        status = dict(obj.status or {})
        status.setdefault("conditions", [])
        return status

    def validate_spec(self, spec, errors: Errors, *, instance=None) -> None:
        validate_fleet_spec(spec, errors, "spec")

    def validate_status(self, status, errors: Errors) -> None:
        if not isinstance(status.get("conditions", []), list):
            errors.invalid("status.conditions", status.get("conditions"), "must be an array")
