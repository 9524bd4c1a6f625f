"""Validation of a whole ``DeviceSpec`` (device ``spec`` and fleet ``template.spec``).

A DeviceSpec is the desired state of one device: OS image, config providers, applications,
systemd units to watch, resource monitors and update schedules (api.md §3). The same schema is
used for fleet templates, where selected string fields may carry Go-template placeholders
(``{{ .metadata.labels.x }}``) that are resolved per device at rollout (api.md §6); anywhere
else a placeholder in a fleet template is an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from flightctl.api.validation import Errors
from flightctl.templating import has_placeholders

from .applications import check_catalog_item_ref, validate_applications
from .common import (
    SpecContext,
    as_list,
    as_object,
    as_string,
    check_enum,
    check_image_reference,
    check_max_len,
    reject_unknown_keys,
)
from .config import validate_config
from .monitors import validate_resources
from .schedule import validate_update_policy

SPEC_KEYS = (
    "updatePolicy",
    "os",
    "config",
    "applications",
    "systemd",
    "resources",
    "consoles",
    "decommissioning",
)
DECOMMISSION_TARGETS = ("Unenroll", "FactoryReset")
SYSTEMD_PATTERN_MAX = 256
SYSTEMD_PATTERN_RE = re.compile(
    r"^[0-9a-zA-Z:\-_.\\\[\]!\-\*\?]+(@[0-9a-zA-Z:\-_.\\\[\]!\-\*\?]+)?(\.[a-zA-Z\[\]!\-\*\?]+)?$"
)

# Where fleet templates may hold placeholders, as key paths relative to the DeviceSpec:
# "[]" stands for any list index, "*" for any map key (api.md §6).
_LIST, _ANY = "[]", "*"
TEMPLATE_FIELDS: tuple[tuple[str, ...], ...] = (
    ("os", "image"),
    ("config", _LIST, "gitRef", "targetRevision"),
    ("config", _LIST, "gitRef", "path"),
    ("config", _LIST, "httpRef", "suffix"),
    ("config", _LIST, "httpRef", "filePath"),
    ("config", _LIST, "inline", _LIST, "path"),
    ("config", _LIST, "inline", _LIST, "content"),
    ("config", _LIST, "secretRef", "name"),
    ("config", _LIST, "secretRef", "namespace"),
    ("config", _LIST, "secretRef", "mountPath"),
    ("applications", _LIST, "image"),
    ("applications", _LIST, "inline", _LIST, "path"),
    ("applications", _LIST, "inline", _LIST, "content"),
    ("applications", _LIST, "envVars", _ANY),
    ("applications", _LIST, "volumes", _LIST, "image", "reference"),
)


def validate_device_spec(
    spec, errors: Errors, path: str = "spec", *, fleet_template: bool = False
) -> None:
    """Append every problem found in ``spec`` to ``errors``.

    ``consoles`` and ``decommissioning`` are only type-checked: whether a client may send them
    depends on the operation and is decided by the caller.
    """
    spec = as_object(errors, path, spec)
    if spec is None:
        return
    ctx = SpecContext(errors, fleet_template)
    reject_unknown_keys(errors, path, spec, SPEC_KEYS)
    sections = {
        "updatePolicy": lambda p, v: validate_update_policy(errors, p, v),
        "os": lambda p, v: _validate_os(ctx, p, v),
        "config": lambda p, v: validate_config(ctx, p, v),
        "applications": lambda p, v: validate_applications(ctx, p, v),
        "systemd": lambda p, v: _validate_systemd(errors, p, v),
        "resources": lambda p, v: validate_resources(ctx, p, v),
        "consoles": lambda p, v: _validate_consoles(errors, p, v),
        "decommissioning": lambda p, v: _validate_decommissioning(errors, p, v),
    }
    for key, validate in sections.items():
        if spec.get(key) is not None:
            validate(f"{path}.{key}", spec[key])
    if fleet_template:
        _reject_misplaced_placeholders(errors, path, spec)


def _validate_os(ctx: SpecContext, path: str, value) -> None:
    errors = ctx.errors
    os_spec = as_object(errors, path, value)
    if os_spec is None:
        return
    has_image = bool(os_spec.get("image"))
    has_ref = os_spec.get("catalogItemRef") is not None
    if has_image and has_ref:
        errors.invalid(path, ["image", "catalogItemRef"], "image and catalogItemRef are exclusive")
    elif has_ref:
        check_catalog_item_ref(errors, f"{path}.catalogItemRef", os_spec["catalogItemRef"])
    else:
        check_image_reference(ctx, f"{path}.image", os_spec.get("image"))


def _validate_systemd(errors: Errors, path: str, value) -> None:
    systemd = as_object(errors, path, value)
    if systemd is None:
        return
    reject_unknown_keys(errors, path, systemd, ("matchPatterns",))
    patterns = systemd.get("matchPatterns")
    if patterns is None:
        return
    for index, pattern in enumerate(as_list(errors, f"{path}.matchPatterns", patterns) or []):
        item_path = f"{path}.matchPatterns[{index}]"
        pattern = as_string(errors, item_path, pattern, required=True)
        if pattern is None or not check_max_len(errors, item_path, pattern, SYSTEMD_PATTERN_MAX):
            continue
        if not SYSTEMD_PATTERN_RE.match(pattern):
            errors.invalid(
                item_path, pattern, "must be a systemd unit name or a shell-style glob pattern"
            )


def _validate_consoles(errors: Errors, path: str, value) -> None:
    for index, item in enumerate(as_list(errors, path, value) or []):
        console = as_object(errors, f"{path}[{index}]", item)
        if console is not None:
            for key in ("sessionID", "sessionMetadata"):
                as_string(errors, f"{path}[{index}].{key}", console.get(key), required=True)


def _validate_decommissioning(errors: Errors, path: str, value) -> None:
    decommission = as_object(errors, path, value)
    if decommission is not None:
        target = decommission.get("target")
        check_enum(errors, f"{path}.target", target, DECOMMISSION_TARGETS, required=True)


# -- placeholders outside the templatable fields -----------------------------------------------


def _reject_misplaced_placeholders(errors: Errors, path: str, spec: dict) -> None:
    for shape, field_path, text in _strings(spec, (), path):
        if has_placeholders(text) and not _is_template_field(shape):
            errors.invalid(field_path, text, "template placeholders are not allowed in this field")


def _strings(value, shape: tuple[str, ...], path: str) -> Iterator[tuple[tuple, str, str]]:
    """Yield (key shape, field path, text) for every string leaf below ``value``."""
    if isinstance(value, str):
        yield shape, path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*shape, str(key)), f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*shape, _LIST), f"{path}[{index}]")


def _is_template_field(shape: tuple[str, ...]) -> bool:
    return any(
        len(pattern) == len(shape)
        and all(p == part or p == _ANY for p, part in zip(pattern, shape, strict=True))
        for pattern in TEMPLATE_FIELDS
    )
