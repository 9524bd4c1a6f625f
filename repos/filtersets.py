"""The fields of a Repository or ResourceSync a ``fieldSelector`` may name (api.md §5.2)."""

from flightctl.api.selectors import Field

REPOSITORY_FIELDS = {
    "spec.type": Field("spec__type"),
    "spec.url": Field("spec__url"),
    "spec.registry": Field("spec__registry"),
    "spec.accessMode": Field("spec__accessMode"),
}

RESOURCE_SYNC_FIELDS = {
    "spec.repository": Field("spec__repository"),
    "spec.type": Field("spec__type"),
}
