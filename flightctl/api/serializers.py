"""The resource envelope: turning rows into API objects and request bodies into checked input.

Each kind subclasses :class:`ResourceSerializer`, names its ``kind`` and adds spec/status
validation. Representation is hand-written rather than DRF field trees because list responses
serialise up to 1,000 objects per page and must stay cheap; the fields are still explicit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from flightctl.api.errors import API_VERSION, MSG_NAME_MISMATCH, bad_request
from flightctl.api.parsers import document_problem
from flightctl.api.validation import Errors

ACCEPTED_API_VERSIONS = ("", "v1beta1", API_VERSION)


def timestamp(value: datetime | None) -> str | None:
    """A time as the API writes it: RFC 3339 in UTC (fractional seconds only when present)."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value.microsecond else value.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def now_timestamp() -> str:
    """Now, to the second: the times the service writes into status documents (a condition's
    ``lastTransitionTime``, a config reference's ``lastUpdatedAt``)."""
    return timestamp(timezone.now().replace(microsecond=0))


@dataclass
class Incoming:
    """A validated request body, reduced to what a client may set."""

    name: str
    labels: dict | None  # None: keep the stored labels (PUT semantics)
    resource_version: int | None
    spec: dict | None
    status: dict | None = None
    raw_metadata: dict = field(default_factory=dict)


class ResourceSerializer:
    """Envelope rules shared by every kind (api.md §0.4, §0.6)."""

    kind: str = ""
    spec_required: bool = True
    status_required: bool = False

    # -- output ---------------------------------------------------------------------------

    def metadata(self, obj) -> dict:
        meta = {
            "name": obj.name,
            "labels": obj.labels or {},
            "generation": obj.generation,
            "resourceVersion": str(obj.resource_version),
            "creationTimestamp": timestamp(obj.created_at),
        }
        if obj.annotations:
            meta["annotations"] = obj.annotations
        if obj.owner:
            meta["owner"] = obj.owner
        return meta

    def spec_representation(self, obj) -> dict:
        return obj.spec

    def status_representation(self, obj) -> dict:
        return obj.status

    def to_representation(self, obj) -> dict:
        body = {
            "apiVersion": API_VERSION,
            "kind": self.kind,
            "metadata": self.metadata(obj),
            "spec": self.spec_representation(obj),
        }
        status = self.status_representation(obj)
        if status is not None:
            body["status"] = status
        return body

    # -- input ----------------------------------------------------------------------------

    def validate_spec(self, spec, errors: Errors, *, instance=None) -> None:
        """Kind-specific spec rules; append to ``errors``."""

    def validate_status(self, status, errors: Errors) -> None:
        """Kind-specific status rules for the status subresource."""

    def parse(self, data, *, path_name: str | None = None, for_status: bool = False) -> Incoming:
        """Check the envelope and spec of a create/replace body; raise a 400 on any problem."""
        if not isinstance(data, dict):
            raise bad_request("API Error: request body must be a JSON object")
        # Again here, not only in the HTTP parser: documents also come from git (ResourceSync)
        # and the web console, and none may carry what PostgreSQL cannot store.
        problem = document_problem(data)
        if problem:
            raise bad_request(problem)
        errors = Errors()
        api_version = data.get("apiVersion") or ""
        if api_version not in ACCEPTED_API_VERSIONS:
            errors.unsupported("apiVersion", api_version, list(ACCEPTED_API_VERSIONS[1:]))
        kind = data.get("kind")
        if kind not in (None, "", self.kind):
            errors.invalid("kind", kind, f'must be "{self.kind}"')
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            raise bad_request("metadata: Required value")
        name = metadata.get("name")
        if path_name is not None and name is not None and name != path_name:
            raise bad_request(MSG_NAME_MISMATCH)
        if name is None:
            name = path_name
        errors.dns1123_subdomain("metadata.name", name)
        labels = metadata.get("labels")
        errors.labels("metadata.labels", labels)
        resource_version = self._resource_version(metadata.get("resourceVersion"))

        spec = data.get("spec")
        status = data.get("status")
        if for_status:
            if self.status_required and not isinstance(status, dict):
                errors.required("status")
            elif status is not None and not isinstance(status, dict):
                errors.invalid("status", status, "must be an object")
            elif status is not None:
                self.validate_status(status, errors)
        elif spec is None:
            if self.spec_required:
                errors.required("spec")
        elif not isinstance(spec, dict):
            errors.invalid("spec", spec, "must be an object")
        else:
            self.validate_spec(spec, errors)
        if errors:
            raise bad_request("\n".join(errors))
        return Incoming(
            name=name,
            labels=dict(labels) if labels is not None else None,
            resource_version=resource_version,
            spec=spec,
            status=status,
            raw_metadata=metadata,
        )

    @staticmethod
    def _resource_version(raw) -> int | None:
        if raw in (None, ""):
            return None
        try:
            return int(str(raw))
        except ValueError:
            raise bad_request(f"illegal resourceVersion {raw!r}: must be an integer")
