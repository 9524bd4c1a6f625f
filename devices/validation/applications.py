"""Validation of ``spec.applications``: the workloads the agent runs on a device.

``ApplicationProviderSpec`` is a oneOf discriminated by ``appType`` (compose, quadlet,
container, helm, vm). All types share a base (name, appType, read-only lifecycle fields) and
take their payload from exactly one source: an OCI ``image``, a ``catalogItemRef`` or
``inline`` files. Which sources and which extra fields a type accepts is table-driven below so
every app type goes through the same code (api.md §3.3, agent.md §6.1).
"""

from __future__ import annotations

import re

from flightctl.api.validation import DNS1123_LABEL_MSG, DNS1123_LABEL_RE, Errors

from .app_content import validate_inline_contents
from .common import (
    SpecContext,
    as_list,
    as_object,
    as_string,
    check_absolute_path,
    check_enum,
    check_image_reference,
    check_relative_path,
    one_of_keys,
)

APP_TYPES = ("compose", "quadlet", "container", "helm", "vm")
SOURCES = ("image", "catalogItemRef", "inline")

ALLOWED_SOURCES: dict[str, tuple[str, ...]] = {
    "compose": ("image", "catalogItemRef", "inline"),
    "quadlet": ("image", "catalogItemRef", "inline"),
    "container": ("image", "catalogItemRef"),
    "helm": ("image", "catalogItemRef"),
    "vm": ("image", "inline"),
}

# Optional fields beyond the base, and the app types that accept each of them.
FIELD_APP_TYPES: dict[str, tuple[str, ...]] = {
    "envVars": ("compose", "quadlet", "container"),
    "volumes": ("compose", "quadlet", "container"),
    "runAs": ("quadlet", "container"),
    "ports": ("container",),
    "resources": ("container",),
    "namespace": ("helm",),
    "values": ("helm",),
    "valuesFiles": ("helm",),
    "publishPorts": ("vm",),
}

# Set by the server from lifecycle actions; clients must not send them (api.md §2.1).
READ_ONLY_FIELDS = ("desiredState", "restartGeneration")

APP_NAME_MAX = 253
ENV_VAR_MAX = 253
ENV_VAR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_VAR_NAME_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', and "
    "must not start with a digit (regex used for validation is '[A-Za-z_][A-Za-z0-9_]*')"
)
PORT_RE = re.compile(r"^(\d+):(\d+)$")
VM_PORT_RE = re.compile(r"^(\d+):(\d+)(/(tcp|udp|sctp))?$")
MEMORY_LIMIT_RE = re.compile(r"^[0-9]+[bkmg]?$")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
VOLUME_KINDS = ("image", "mount")


def validate_applications(ctx: SpecContext, path: str, value) -> None:
    apps = as_list(ctx.errors, path, value)
    if apps is None:
        return
    seen: set[str] = set()
    for index, item in enumerate(apps):
        app_path = f"{path}[{index}]"
        app = as_object(ctx.errors, app_path, item)
        if app is not None:
            _validate_application(ctx, app_path, app, seen)


def _validate_application(ctx: SpecContext, path: str, app: dict, seen: set[str]) -> None:
    errors = ctx.errors
    app_type = app.get("appType")
    if not check_enum(errors, f"{path}.appType", app_type, APP_TYPES, required=True):
        return
    for field in READ_ONLY_FIELDS:
        if field in app:
            errors.forbidden(f"{path}.{field}", "field is read-only and cannot be set by clients")
    for field, types in FIELD_APP_TYPES.items():
        if app.get(field) is not None and app_type not in types:
            allowed = "/".join(types)
            detail = f'can only be defined for {allowed} applications, not "{app_type}"'
            errors.forbidden(f"{path}.{field}", detail)
    source = one_of_keys(errors, path, app, SOURCES)
    _check_identity(errors, path, app, source, seen)
    if source is not None:
        _check_source(ctx, path, app, app_type, source)
    _check_type_fields(ctx, path, app, app_type)


def _check_identity(errors: Errors, path: str, app: dict, source: str | None, seen: set) -> None:
    """Check the app name; the image reference stands in for a missing name (image source)."""
    name = app.get("name")
    name_path = f"{path}.name"
    if name is None:
        if source in ("inline", "catalogItemRef"):
            errors.required(name_path, f"application name is required for {source} applications")
        identity = app.get("image") if source == "image" else None
    else:
        identity = _check_app_name(errors, name_path, name)
    if not isinstance(identity, str) or not identity:
        return
    if identity in seen:
        errors.invalid(
            name_path, identity, "duplicate application name, application names must be unique"
        )
    seen.add(identity)


def _check_app_name(errors: Errors, path: str, name) -> str | None:
    if not isinstance(name, str):
        errors.invalid(path, name, "must be a string")
        return None
    if not name:
        errors.required(path)
        return None
    if len(name) > APP_NAME_MAX:
        errors.too_long(path, name, APP_NAME_MAX)
    if not DNS1123_LABEL_RE.match(name):
        errors.invalid(path, name, DNS1123_LABEL_MSG)
    return name


def _check_source(ctx: SpecContext, path: str, app: dict, app_type: str, source: str) -> None:
    if source not in ALLOWED_SOURCES[app_type]:
        ctx.errors.forbidden(
            f"{path}.{source}", f'{source} application source is not supported for "{app_type}"'
        )
        return
    if source == "image":
        check_image_reference(ctx, f"{path}.image", app["image"])
    elif source == "catalogItemRef":
        check_catalog_item_ref(ctx.errors, f"{path}.catalogItemRef", app["catalogItemRef"])
    else:
        validate_inline_contents(ctx, f"{path}.inline", app["inline"], app_type, app.get("name"))


def check_catalog_item_ref(errors: Errors, path: str, value) -> None:
    """CatalogItemRefSpec {catalog, item, version, channel?} (additionalProperties: false)."""
    ref = as_object(errors, path, value)
    if ref is None:
        return
    for key in ref:
        if key not in ("catalog", "item", "version", "channel"):
            errors.invalid(path, key, f'unknown field "{key}"')
    for key in ("catalog", "item", "version"):
        as_string(errors, f"{path}.{key}", ref.get(key), required=True)
    as_string(errors, f"{path}.channel", ref.get("channel"))


def _check_type_fields(ctx: SpecContext, path: str, app: dict, app_type: str) -> None:
    errors = ctx.errors
    if app.get("envVars") is not None:
        _check_env_vars(ctx, f"{path}.envVars", app["envVars"])
    as_string(errors, f"{path}.runAs", app.get("runAs"))
    if app.get("ports") is not None:
        _check_ports(errors, f"{path}.ports", app["ports"], PORT_RE)
    if app.get("publishPorts") is not None:
        _check_ports(errors, f"{path}.publishPorts", app["publishPorts"], VM_PORT_RE)
    if app.get("resources") is not None:
        _check_resources(errors, f"{path}.resources", app["resources"])
    if app_type == "helm":
        _check_helm_fields(errors, path, app)
    annotations = app.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        errors.invalid(f"{path}.annotations", annotations, "must be a map of strings")
    if app.get("volumes") is not None and app_type in FIELD_APP_TYPES["volumes"]:
        _check_volumes(ctx, f"{path}.volumes", app["volumes"], app_type)


def _check_env_vars(ctx: SpecContext, path: str, value) -> None:
    errors = ctx.errors
    env = as_object(errors, path, value)
    if env is None:
        return
    for key, val in env.items():
        # Key and value errors both use the map's path, as the reference's clients expect
        # ("envVars: Invalid value").
        if not 1 <= len(key) <= ENV_VAR_MAX:
            errors.invalid(path, key, f"must be between 1 and {ENV_VAR_MAX} characters")
        elif not ENV_VAR_NAME_RE.match(key):
            errors.invalid(path, key, ENV_VAR_NAME_MSG)
        if not isinstance(val, str):
            errors.invalid(path, val, "must be a string")
        elif not ctx.templated(f"{path}.{key}", val) and not 1 <= len(val) <= ENV_VAR_MAX:
            errors.invalid(path, val, f"must be between 1 and {ENV_VAR_MAX} characters")


def _check_ports(errors: Errors, path: str, value, pattern: re.Pattern) -> None:
    ports = as_list(errors, path, value)
    for index, port in enumerate(ports or []):
        port_path = f"{path}[{index}]"
        match = pattern.match(port) if isinstance(port, str) else None
        if not match:
            errors.invalid(port_path, port, "must be in format 'hostPort:containerPort'")
            continue
        for number in match.group(1, 2):
            if not 1 <= int(number) <= 65535:
                errors.invalid(
                    port_path, port, "must be a number in the valid port range of [1, 65535]"
                )
                break


def _check_resources(errors: Errors, path: str, value) -> None:
    resources = as_object(errors, path, value)
    if resources is None or resources.get("limits") is None:
        return
    limits = as_object(errors, f"{path}.limits", resources["limits"])
    if limits is None:
        return
    cpu = as_string(errors, f"{path}.limits.cpu", limits.get("cpu"))
    if cpu is not None:
        try:
            if float(cpu) < 0:
                errors.invalid(f"{path}.limits.cpu", cpu, "must be a positive number")
        except ValueError:
            errors.invalid(f"{path}.limits.cpu", cpu, "must be a valid number")
    memory = as_string(errors, f"{path}.limits.memory", limits.get("memory"))
    if memory is not None and not MEMORY_LIMIT_RE.match(memory):
        errors.invalid(
            f"{path}.limits.memory",
            memory,
            "must be in format 'number[unit]' where unit is b, k, m, or g",
        )


def _check_helm_fields(errors: Errors, path: str, app: dict) -> None:
    namespace = as_string(errors, f"{path}.namespace", app.get("namespace"))
    if namespace:
        errors.dns1123_label(f"{path}.namespace", namespace)
    if app.get("values") is not None:
        as_object(errors, f"{path}.values", app["values"])
    files = app.get("valuesFiles")
    files = [] if files is None else as_list(errors, f"{path}.valuesFiles", files)
    for index, name in enumerate(files or []):
        file_path = f"{path}.valuesFiles[{index}]"
        if check_relative_path(errors, file_path, name) and not name.endswith((".yaml", ".yml")):
            errors.invalid(file_path, name, "values file must have .yaml or .yml extension")


def _check_volumes(ctx: SpecContext, path: str, value, app_type: str) -> None:
    errors = ctx.errors
    volumes = as_list(errors, path, value)
    names: set[str] = set()
    for index, item in enumerate(volumes or []):
        vol_path = f"{path}[{index}]"
        volume = as_object(errors, vol_path, item)
        if volume is None:
            continue
        name = volume.get("name")
        if errors.dns1123_label(f"{vol_path}.name", name):
            if name in names:
                errors.invalid(f"{vol_path}.name", name, "duplicate volume name for application")
            names.add(name)
        check_enum(errors, f"{vol_path}.reclaimPolicy", volume.get("reclaimPolicy"), ["Retain"])
        _check_volume_kind(ctx, vol_path, volume, app_type)


def _check_volume_kind(ctx: SpecContext, path: str, volume: dict, app_type: str) -> None:
    """Image volumes are for compose/quadlet; mounts (with or without image) for containers."""
    errors = ctx.errors
    kinds = tuple(k for k in VOLUME_KINDS if volume.get(k) is not None)
    if not kinds:
        errors.required(path, "a volume must define image and/or mount")
        return
    wants_container = "mount" in kinds
    if wants_container != (app_type == "container"):
        kind = "image mount" if kinds == VOLUME_KINDS else kinds[0]
        errors.invalid(path, app_type, f"{kind} volume is not supported for this application type")
    if "image" in kinds:
        _check_image_volume_source(ctx, f"{path}.image", volume["image"])
    if "mount" in kinds:
        mount = as_object(errors, f"{path}.mount", volume["mount"])
        if mount is not None:
            target = as_string(errors, f"{path}.mount.path", mount.get("path"), required=True)
            if target is not None:
                # The part after ':' holds mount options such as "ro".
                check_absolute_path(errors, f"{path}.mount.path", target.split(":", 1)[0])


def _check_image_volume_source(ctx: SpecContext, path: str, value) -> None:
    source = as_object(ctx.errors, path, value)
    if source is None:
        return
    kind = one_of_keys(ctx.errors, path, source, ("reference", "catalogItemRef"))
    if kind == "reference":
        check_image_reference(ctx, f"{path}.reference", source["reference"])
    elif kind == "catalogItemRef":
        check_catalog_item_ref(ctx.errors, f"{path}.catalogItemRef", source["catalogItemRef"])
    check_enum(ctx.errors, f"{path}.pullPolicy", source.get("pullPolicy"), PULL_POLICIES)
