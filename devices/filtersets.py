"""The fields of a Device a ``fieldSelector`` may name, and the columns that answer them."""

from flightctl.api.selectors import Field, any_of

DEVICE_FIELDS = {
    "metadata.alias": Field("alias"),
    # api.md §5.2: the name or the ``alias`` label matches.
    "metadata.nameOrAlias": Field(any_of("name", "alias")),
    "status.summary.status": Field("summary_status"),
    "status.applicationsSummary.status": Field("apps_status"),
    "status.updated.status": Field("updated_status"),
    "status.lifecycle.status": Field("lifecycle_status"),
    "status.capabilities.osMode": Field("os_mode"),
}

# ``GET /labels?kind=Device``: the (device, key, value) rows of devices.models.DeviceLabel.
LABEL_FIELDS = {
    "metadata.name": Field("device_name"),
    "metadata.labels.key": Field("key"),
    "metadata.labels.value": Field("value"),
    "metadata.labels.keyOrValue": Field(any_of("key", "value")),
}
