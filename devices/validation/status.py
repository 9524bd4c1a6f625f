"""Light validation of a ``DeviceStatus`` as reported by agents (api.md §4.1).

The agent owns the status, and newer agents may report fields this server does not know, so
unknown keys are accepted. What is checked is that the known fields have the JSON types and
enum values the server later filters and summarises on (a bad ``summary.status`` would
otherwise poison field selectors and fleet summaries).
"""

from __future__ import annotations

from flightctl.api.validation import Errors

from .common import as_list, as_object, as_string, check_enum, is_int

CONDITION_STATUSES = ("True", "False", "Unknown")
APPLICATION_STATUSES = (
    "Preparing", "Starting", "Running", "Error", "Unknown", "Completed", "Stopped", "Stopping",
)
APP_TYPES = ("compose", "quadlet", "container", "helm", "vm")
RESOURCE_STATUSES = ("Healthy", "Warning", "Critical", "Error", "Unknown")
INTEGRITY_STATUSES = ("Verified", "Failed", "Unknown", "Unsupported")

# Objects of the shape {status: <enum>, info?: string}.
STATUS_OBJECTS: dict[str, tuple[str, ...]] = {
    "applicationsSummary": ("Healthy", "Degraded", "Error", "Unknown", "NoApplications"),
    "updated": ("UpToDate", "OutOfDate", "Updating", "Unknown"),
    "summary": (
        "Online", "Degraded", "Error", "Rebooting", "PoweredOff", "Unknown",
        "AwaitingReconnect", "ConflictPaused",
    ),
    "lifecycle": ("Unknown", "Enrolled", "Decommissioning", "Decommissioned"),
    "integrity": INTEGRITY_STATUSES,
}
SYSTEMD_STATES: dict[str, tuple[str, ...]] = {
    "enableState": (
        "enabled", "enabled-runtime", "linked", "linked-runtime", "alias", "masked",
        "masked-runtime", "static", "disabled", "indirect", "generated", "transient", "bad",
        "unknown", "",
    ),
    "loadState": (
        "stub", "loaded", "not-found", "bad-setting", "error", "merged", "masked", "unknown",
    ),
    "activeState": (
        "active", "reloading", "inactive", "failed", "activating", "deactivating",
        "maintenance", "refreshing", "unknown",
    ),
}


def validate_device_status(status, errors: Errors, path: str = "status") -> None:
    status = as_object(errors, path, status)
    if status is None:
        return
    for key, allowed in STATUS_OBJECTS.items():
        if status.get(key) is not None:
            _status_object(errors, f"{path}.{key}", status[key], allowed)
    checks = {
        "conditions": _conditions,
        "systemInfo": _system_info,
        "applications": _applications,
        "resources": _resources,
        "config": lambda e, p, v: _string_fields(e, p, v, ("renderedVersion",)),
        "os": lambda e, p, v: _string_fields(e, p, v, ("image", "imageDigest")),
        "capabilities": _capabilities,
        "systemd": _systemd,
        "dependencySync": lambda e, p, v: as_object(e, p, v),
        "lastSeen": lambda e, p, v: as_string(e, p, v),
    }
    for key, check in checks.items():
        if status.get(key) is not None:
            check(errors, f"{path}.{key}", status[key])


def _status_object(errors: Errors, path: str, value, allowed: tuple[str, ...]) -> None:
    obj = as_object(errors, path, value)
    if obj is None:
        return
    check_enum(errors, f"{path}.status", obj.get("status"), allowed, required=True)
    as_string(errors, f"{path}.info", obj.get("info"))
    for check in ("deviceIdentity", "tpm"):  # integrity sub-checks share the shape
        if obj.get(check) is not None:
            _status_object(errors, f"{path}.{check}", obj[check], INTEGRITY_STATUSES)


def _string_fields(errors: Errors, path: str, value, keys: tuple[str, ...]) -> dict | None:
    obj = as_object(errors, path, value)
    for key in keys if obj is not None else ():
        as_string(errors, f"{path}.{key}", obj.get(key))
    return obj


def _objects(errors: Errors, path: str, value):
    for index, item in enumerate(as_list(errors, path, value) or []):
        obj = as_object(errors, f"{path}[{index}]", item)
        if obj is not None:
            yield f"{path}[{index}]", obj


def _conditions(errors: Errors, path: str, value) -> None:
    for item_path, condition in _objects(errors, path, value):
        as_string(errors, f"{item_path}.type", condition.get("type"), required=True)
        check_enum(errors, f"{item_path}.status", condition.get("status"), CONDITION_STATUSES)
        _string_fields(errors, item_path, condition, ("reason", "message", "lastTransitionTime"))


def _system_info(errors: Errors, path: str, value) -> None:
    info = as_object(errors, path, value)
    for key, item in (info or {}).items():
        if key == "customInfo":
            custom = as_object(errors, f"{path}.customInfo", item)
            for custom_key, custom_value in (custom or {}).items():
                as_string(errors, f"{path}.customInfo.{custom_key}", custom_value)
        else:
            as_string(errors, f"{path}.{key}", item)


def _applications(errors: Errors, path: str, value) -> None:
    for item_path, app in _objects(errors, path, value):
        _string_fields(errors, item_path, app, ("name", "ready", "runAs"))
        check_enum(errors, f"{item_path}.status", app.get("status"), APPLICATION_STATUSES)
        check_enum(errors, f"{item_path}.appType", app.get("appType"), APP_TYPES)
        restarts = app.get("restarts")
        if restarts is not None and not is_int(restarts):
            errors.invalid(f"{item_path}.restarts", restarts, "must be an integer")
        embedded = app.get("embedded")
        if embedded is not None and not isinstance(embedded, bool):
            errors.invalid(f"{item_path}.embedded", embedded, "must be a boolean")
        if app.get("volumes") is not None:
            for volume_path, volume in _objects(errors, f"{item_path}.volumes", app["volumes"]):
                _string_fields(errors, volume_path, volume, ("name", "reference"))


def _resources(errors: Errors, path: str, value) -> None:
    resources = as_object(errors, path, value)
    for key in ("cpu", "memory", "disk") if resources is not None else ():
        check_enum(errors, f"{path}.{key}", resources.get(key), RESOURCE_STATUSES)


def _capabilities(errors: Errors, path: str, value) -> None:
    capabilities = as_object(errors, path, value)
    if capabilities is not None:
        check_enum(errors, f"{path}.osMode", capabilities.get("osMode"), ("image", "package"))


def _systemd(errors: Errors, path: str, value) -> None:
    for item_path, unit in _objects(errors, path, value):
        _string_fields(errors, item_path, unit, ("unit", "description", "subState"))
        for key, allowed in SYSTEMD_STATES.items():
            check_enum(errors, f"{item_path}.{key}", unit.get(key), allowed)
