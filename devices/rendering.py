"""Rendering: turning a device's spec into what its agent receives, for many devices at once.

A rendered spec has every config provider resolved and merged into one unnamed inline provider
(the last provider writing a path wins), application lifecycle overlays baked in, and
everything else passed through. Its SHA-256 gates the work: ``rendered_version`` moves only
when the rendered content changes, so agents never re-apply an identical spec. The new version
is ``max(stored, reported by the agent) + 1`` as in the reference (a restored database never
hands an agent a version it has already seen). Each render is announced with ``pg_notify`` in
the same transaction, which wakes exactly that device's waiting long-poll at commit
(devices.bulk).

Config providers that read from elsewhere (``gitRef``, ``httpRef``: the repos app) are resolved
by whoever registered them with :func:`register_config_provider`; this app imports none of them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from devices import bulk
from devices.lifecycle import overlay_applications
from devices.models import Device
from flightctl.api.annotations import (
    AWAITING_RECONNECT,
    CONFLICT_PAUSED,
    RENDERED_TEMPLATE_VERSION,
    TEMPLATE_VERSION,
)
from flightctl.api.conditions import update_conditions

SPEC_VALID = "SpecValid"


class RenderError(ValueError):
    """The spec cannot be rendered (e.g. a provider that cannot be resolved)."""


#: ``kind -> resolve(provider, device)``: the inline file entries a provider stands for
_PROVIDERS: dict[str, Callable[[dict, Device], list[dict]]] = {}


def register_config_provider(kind: str, resolve: Callable[[dict, Device], list[dict]]) -> None:
    """Let ``resolve(provider, device)`` render the config providers of ``kind`` (a key such as
    ``gitRef``); it raises :class:`RenderError` with a message for ``SpecValid=False``."""
    _PROVIDERS[kind] = resolve


@dataclass
class RenderResult:
    device: Device
    spec: dict | None
    digest: str
    error: str = ""


def _resolve_config(providers: list, device: Device | None = None) -> list:
    files: dict[str, dict] = {}
    for provider in providers or []:
        if "inline" in provider:
            for entry in provider["inline"]:
                files[entry["path"]] = {k: v for k, v in entry.items() if v is not None}
            continue
        kind = next((k for k in ("gitRef", "httpRef", "secretRef") if k in provider), None)
        if kind is None:
            continue
        if kind not in _PROVIDERS or device is None:
            raise RenderError(f'config provider "{provider.get("name")}": {kind} providers '
                              "are not supported by this server yet")
        try:
            entries = _PROVIDERS[kind](provider, device)
        except RenderError as exc:
            raise RenderError(f'config provider "{provider.get("name")}": {exc}')
        for entry in entries:
            files[entry["path"]] = entry
    return [{"inline": list(files.values())}] if files else []


def render_spec(device: Device) -> dict:
    """The rendered DeviceSpec of one device (raises RenderError)."""
    spec = copy.deepcopy(device.spec or {})
    spec.pop("consoles", None)
    if "config" in spec:
        spec["config"] = _resolve_config(spec["config"], device)
    if spec.get("applications"):
        fleet_annotations = getattr(device, "fleet_annotations", None) or {}
        spec["applications"] = overlay_applications(
            spec["applications"], device.annotations or {}, fleet_annotations
        )
    return spec


def digest(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _reported_version(device: Device) -> int:
    try:
        return int(((device.status or {}).get("config") or {}).get("renderedVersion") or 0)
    except (TypeError, ValueError):
        return 0


def held_back(annotations: dict) -> bool:
    """A device awaiting its reconnection after a database restore, or paused on a version
    conflict, is not rendered until that is resolved (devices.restore)."""
    return any(str(annotations.get(key, "")).lower() == "true"
               for key in (AWAITING_RECONNECT, CONFLICT_PAUSED))


def render_devices(devices: list[Device], *, force: bool = False) -> int:
    """Render ``devices`` (rows already loaded); write the changed ones in one statement.

    Returns how many devices got a new rendered version.
    """
    rows = []
    notifications = []
    for device in devices:
        annotations = dict(device.annotations or {})
        if held_back(annotations):
            continue
        try:
            spec = render_spec(device)
            error = ""
        except RenderError as exc:
            spec, error = None, str(exc)
        new_digest = digest(spec) if spec is not None else device.rendered_hash
        conditions = copy.deepcopy(device.service_conditions or [])
        update_conditions(conditions, SPEC_VALID, not error, "Invalid" if error else "Valid",
                          error)
        if TEMPLATE_VERSION in annotations:
            annotations[RENDERED_TEMPLATE_VERSION] = annotations[TEMPLATE_VERSION]
        changed_content = spec is not None and (force or new_digest != device.rendered_hash)
        if not changed_content and conditions == (device.service_conditions or []) and (
                annotations == (device.annotations or {})):
            continue
        version = device.rendered_version
        rendered = device.rendered_spec
        if changed_content:
            version = max(device.rendered_version, _reported_version(device)) + 1
            rendered = spec
            notifications.append(f"{device.org_id}/{device.name}/{version}")
        rows.append({"id": device.pk, "rendered_spec": rendered, "rendered_version": version,
                     "rendered_hash": new_digest, "service_conditions": conditions,
                     "annotations": annotations, "rendered": changed_content})
        device.rendered_spec, device.rendered_version, device.rendered_hash = (
            rendered, version, new_digest)
        device.service_conditions, device.annotations = conditions, annotations
    bulk.write_each(rows, notify=notifications)
    return len(notifications)
