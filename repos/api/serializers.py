"""API representation and input checks of Repository and ResourceSync."""

from __future__ import annotations

from flightctl.api.serializers import ResourceSerializer
from flightctl.api.validation import Errors
from repos.crypto import mask
from repos.validation import validate_repository_spec, validate_resource_sync_spec


class _WithConditions(ResourceSerializer):
    def status_representation(self, obj) -> dict:
        status = dict(obj.status or {})
        status.setdefault("conditions", [])
        return status


class RepositorySerializer(_WithConditions):
    """Envelope of a Repository: every secret in the spec is shown as ``*****``."""

    kind = "Repository"

    def spec_representation(self, obj) -> dict:
        return mask(obj.spec)

    def validate_spec(self, spec, errors: Errors, *, instance=None) -> None:
        validate_repository_spec(spec, errors)


class ResourceSyncSerializer(_WithConditions):
    """Envelope of a ResourceSync: ``spec.type`` defaults to ``fleet``."""

    kind = "ResourceSync"

    def validate_spec(self, spec, errors: Errors, *, instance=None) -> None:
        validate_resource_sync_spec(spec, errors)
