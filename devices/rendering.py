"""Rendering: turning a device's spec into what its agent receives, for many devices at once.

A rendered spec has every config provider resolved and merged into one unnamed inline provider
(the last provider writing a path wins), application lifecycle overlays baked in, and
everything else passed through. Its SHA-256 gates the work: ``rendered_version`` moves only
when the rendered content changes, so agents never re-apply an identical spec. The new version
is ``max(stored, reported by the agent) + 1`` as in the reference (a restored database never
hands an agent a version it has already seen). Each render is announced with ``pg_notify`` in
the same transaction, which wakes exactly that device's waiting long-poll at commit.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass

from django.db import connection
from django.utils import timezone

from devices.health import AWAITING_RECONNECT, CONFLICT_PAUSED
from devices.models import Device
from devices.services import RENDER_CHANNEL

SPEC_VALID = "SpecValid"
RENDERED_TV = "fleet-controller/renderedTemplateVersion"
DEVICE_TV = "fleet-controller/templateVersion"


class RenderError(ValueError):
    """The spec cannot be rendered (e.g. a provider that cannot be resolved)."""


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
        elif ("gitRef" in provider or "httpRef" in provider) and device is not None:
            # Git and HTTP content is fetched (and frozen per TemplateVersion) by the repos app.
            from repos.providers import ProviderError, resolve

            try:
                entries = resolve(provider, device)
            except ProviderError as exc:
                raise RenderError(f'config provider "{provider.get("name")}": {exc}')
            for entry in entries:
                files[entry["path"]] = entry
        elif "gitRef" in provider or "httpRef" in provider or "secretRef" in provider:
            kind = next(k for k in ("gitRef", "httpRef", "secretRef") if k in provider)
            raise RenderError(
                f'config provider "{provider.get("name")}": {kind} providers are not '
                "supported by this server yet"
            )
    return [{"inline": list(files.values())}] if files else []


def render_spec(device: Device) -> dict:
    """The rendered DeviceSpec of one device (raises RenderError)."""
    spec = copy.deepcopy(device.spec or {})
    spec.pop("consoles", None)
    if "config" in spec:
        spec["config"] = _resolve_config(spec["config"], device)
    if spec.get("applications"):
        try:
            from devices.lifecycle import overlay_applications
        except ImportError:  # lifecycle overlays not installed in this build
            pass
        else:
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


def _condition(ok: bool, message: str) -> dict:
    now = timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"type": SPEC_VALID, "status": "True" if ok else "False",
            "reason": "Valid" if ok else "Invalid", "message": message,
            "lastTransitionTime": now}


def _with_condition(conditions: list, condition: dict) -> list:
    kept = [c for c in conditions or [] if c.get("type") != condition["type"]]
    old = next((c for c in conditions or [] if c.get("type") == condition["type"]), None)
    if old and old.get("status") == condition["status"] and old.get("message") == condition[
            "message"]:
        condition = old  # keep lastTransitionTime when nothing changed
    return kept + [condition]


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
    now = timezone.now()
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
        conditions = _with_condition(device.service_conditions, _condition(not error, error))
        if DEVICE_TV in annotations:
            annotations[RENDERED_TV] = annotations[DEVICE_TV]
        changed_content = spec is not None and (force or new_digest != device.rendered_hash)
        if not changed_content and conditions == device.service_conditions and (
                annotations == (device.annotations or {})):
            continue
        version = device.rendered_version
        rendered = device.rendered_spec
        if changed_content:
            version = max(device.rendered_version, _reported_version(device)) + 1
            rendered = spec
            notifications.append(f"{device.org_id}/{device.name}/{version}")
        rows.append((device.pk, json.dumps(rendered), version, new_digest,
                     json.dumps(conditions), json.dumps(annotations), changed_content))
        device.rendered_spec, device.rendered_version, device.rendered_hash = (
            rendered, version, new_digest)
        device.service_conditions, device.annotations = conditions, annotations
    if not rows:
        return 0
    with connection.cursor() as cursor:
        # One UPDATE ... FROM (VALUES ...) for the whole page: the ORM's bulk_update would
        # build a CASE per column and row, which is far slower at fleet scale.
        cursor.execute(
            """
            UPDATE devices_device AS d SET
                rendered_spec = v.spec::jsonb, rendered_version = v.version,
                rendered_hash = v.digest, service_conditions = v.conditions::jsonb,
                annotations = v.annotations::jsonb,
                rendered_at = CASE WHEN v.bumped THEN %s ELSE d.rendered_at END,
                resource_version = d.resource_version + 1
            FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %s::text[], %s::text[],
                        %s::text[], %s::boolean[])
                 AS v(id, spec, version, digest, conditions, annotations, bumped)
            WHERE d.id = v.id
            """,
            [now, *map(list, zip(*rows, strict=True))],
        )
        if notifications:
            cursor.execute("SELECT pg_notify(%s, n) FROM unnest(%s::text[]) AS n",
                           [RENDER_CHANNEL, notifications])
    return len(notifications)
